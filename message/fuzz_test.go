package message

import (
	"bytes"
	"encoding/base64"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// corpusDir is where the shared evaluation corpora live: $MAILHOOK_CORPUS, or the checkout's
// sibling folder shared/corpus. Tests and seeds that need it are skipped when it is absent.
func corpusDir() string {
	if d := os.Getenv("MAILHOOK_CORPUS"); d != "" {
		return d
	}
	return filepath.Join("..", "..", "shared", "corpus")
}

// corpusFiles reads every file of a corpus subfolder; nil when the folder is absent.
func corpusFiles(tb testing.TB, sub string) map[string][]byte {
	tb.Helper()
	dir := filepath.Join(corpusDir(), sub)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out[sub+"/"+e.Name()] = b
	}
	return out
}

// asMessage gives a go-fuzz-multipart body (which starts with its boundary line) a header.
func asMessage(body []byte) []byte {
	boundary := "dfhjksd23f43242f43fv4b4g2g2g23vf2"
	if first, _, ok := bytes.Cut(body, []byte("\n")); ok && bytes.HasPrefix(first, []byte("--")) && len(first) < 200 {
		boundary = strings.TrimSpace(string(first[2:]))
	}
	return append([]byte("Content-Type: multipart/form-data; boundary=\""+boundary+"\"\r\n\r\n"), body...)
}

// allCorpus returns the corpus messages (multipart bodies given a header) and the fixtures.
func allCorpus(tb testing.TB) map[string][]byte {
	out := corpusFiles(tb, "go-fuzz-mail")
	if out == nil {
		out = map[string][]byte{}
	}
	for name, b := range corpusFiles(tb, "go-fuzz-multipart") {
		out[name] = asMessage(b)
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "*.eml"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out[f] = b
	}
	return out
}

// smallLimits make fuzzing reach every limit quickly.
var smallLimits = Limits{HeaderBytes: 2048, Depth: 6, Parts: 40, LineBytes: 1000, DecodedBytes: 3000, TextBytes: 2000}

func FuzzParse(f *testing.F) {
	for _, b := range allCorpus(f) {
		f.Add(b)
	}
	f.Add([]byte(nested(10)))
	f.Add([]byte(manyParts(50)))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range []Limits{{}, smallLimits} {
			m, err := Parse(bytes.NewReader(data), lim)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, m)
			lim = lim.withDefaults()
			if m.Size != int64(len(data)) || len(m.Text) > lim.TextBytes || len(m.HTML) > lim.TextBytes {
				t.Fatalf("size %d of %d, text %d, html %d", m.Size, len(data), len(m.Text), len(m.HTML))
			}
			// Bare LF parses exactly like CRLF.
			if !bytes.ContainsRune(data, '\r') {
				m2, err := Parse(bytes.NewReader(bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))), lim)
				if err != nil {
					t.Fatal(err)
				}
				m2.Size, m2.Key = m.Size, m.Key
				if !reflect.DeepEqual(m, m2) {
					t.Fatalf("LF and CRLF differ:\n%+v\n%+v", m, m2)
				}
			}
		}
	})
}

func FuzzHeader(f *testing.F) {
	for _, b := range allCorpus(f) {
		if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
			b = b[:i+2]
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		m := Build(Pieces{Header: header, Size: int64(len(header))}, smallLimits)
		checkInvariants(t, m)
		a := m.Auth("mx.example.com")
		for _, v := range []string{a.SPF, a.DKIM, a.DMARC} {
			if !utf8.ValidString(v) {
				t.Fatalf("auth %q", v)
			}
		}
		for _, h := range m.Headers {
			if _, ps, _ := parseMediaHeader(h.Value); ps != nil {
				for k, v := range ps {
					_ = k + v
				}
			}
		}
	})
}

func FuzzAddress(f *testing.F) {
	seeds := []string{
		"Alice <alice@example.com>, bob@example.com (Bob)",
		"=?utf-8?q?=40attacker.com?=@microsoft.com",
		"=?utf-8?b?YXR0YWNrZXJAZXZpbC5jb20=?=",
		"\"=?utf-8?q?a=40b?=\" <c@d.example>",
		"undisclosed-recipients:;",
		"group: a@b.c, d@e.f;, g@h.i",
		"a@b.c, <<broken, \"B\" <b@example.com>",
		"(((((((((((comment)))))))))) x@y.z",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	for _, b := range allCorpus(f) {
		for _, line := range strings.Split(string(b), "\n") {
			name, v, ok := strings.Cut(line, ":")
			switch strings.ToLower(name) {
			case "from", "to", "cc", "reply-to", "sender":
				if ok {
					f.Add(strings.TrimSpace(v))
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d defects
		for _, a := range newDecoder(&d).addresses(s) {
			if !utf8.ValidString(a.Name) || !utf8.ValidString(a.Address) || strings.ContainsRune(a.Name+a.Address, 0) {
				t.Fatalf("invalid text in %+v", a)
			}
			if strings.Contains(a.Address, "=?") || !strings.Contains(a.Address, "@") {
				t.Fatalf("address %q", a.Address)
			}
		}
	})
}

// FuzzTransferDecoding checks the tolerant decoders against the standard encoders: whatever
// they tolerate, they must decode well-formed input exactly.
func FuzzTransferDecoding(f *testing.F) {
	f.Add([]byte("hello, world"), 76)
	f.Add([]byte("caf\xc3\xa9 = \t\r\n trailing  \n"), 3)
	f.Fuzz(func(t *testing.T, data []byte, width int) {
		enc := base64.StdEncoding.EncodeToString(data)
		if width = max(4, width%200); width%4 != 0 {
			width += 4 - width%4
		}
		var wrapped strings.Builder
		for i := 0; i < len(enc); i += width {
			wrapped.WriteString(enc[i:min(i+width, len(enc))])
			wrapped.WriteString("\r\n")
		}
		if got, bad := decodeBase64([]byte(wrapped.String())); bad || !bytes.Equal(got, data) {
			t.Fatalf("base64: got %q (bad %v), want %q", got, bad, data)
		}

		var qp bytes.Buffer
		w := quotedprintable.NewWriter(&qp)
		w.Binary = true
		w.Write(data)
		w.Close()
		if got, bad := decodeQP(qp.Bytes()); bad || !bytes.Equal(got, data) {
			t.Fatalf("quoted-printable: got %q (bad %v), want %q", got, bad, data)
		}
		// Arbitrary input never fails and never grows.
		if out, _ := decodeQP(data); len(out) > len(data)+2*bytes.Count(data, []byte("\n")) {
			t.Fatalf("qp output %d bytes from %d", len(out), len(data))
		}
		if out, _ := decodeBase64(data); len(out) > len(data) {
			t.Fatalf("base64 output %d bytes from %d", len(out), len(data))
		}
	})
}

// TestCorpus parses every corpus message without panic, within its memory bound (64 MiB
// per message, measured as bytes allocated during the parse, an upper bound of the peak), and
// reports the slowest file.
func TestCorpus(t *testing.T) {
	files := allCorpus(t)
	if len(files) < 100 {
		t.Skipf("corpus not found at %s (set MAILHOOK_CORPUS)", corpusDir())
	}
	var slowest string
	var slowestTime time.Duration
	var maxAlloc uint64
	for name, b := range files {
		var m *Message
		start := time.Now()
		alloc := allocated(func() {
			var err error
			if m, err = Parse(bytes.NewReader(b), Limits{}); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		})
		if d := time.Since(start); d > slowestTime {
			slowest, slowestTime = name, d
		}
		checkInvariants(t, m)
		if alloc > 64<<20 {
			t.Errorf("%s: %d bytes allocated", name, alloc)
		}
		maxAlloc = max(maxAlloc, alloc)
	}
	t.Logf("%d files; slowest %s: %v; most allocated: %d bytes", len(files), slowest, slowestTime, maxAlloc)
}
