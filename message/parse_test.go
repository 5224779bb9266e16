package message

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// crlf turns "\n" line ends into CRLF, so messages can be written readably in Go strings.
func crlfText(s string) string {
	return strings.ReplaceAll(strings.TrimPrefix(s, "\n"), "\n", "\r\n")
}

func mustParse(t testing.TB, msg string, lim Limits) *Message {
	t.Helper()
	m, err := Parse(strings.NewReader(msg), lim)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	checkInvariants(t, m)
	return m
}

// checkInvariants checks what must hold for every Message, whatever the input.
func checkInvariants(t testing.TB, m *Message) {
	t.Helper()
	check := func(what, s string) {
		if !utf8.ValidString(s) {
			t.Errorf("%s is not valid UTF-8: %q", what, s)
		}
		if strings.IndexByte(s, 0) >= 0 {
			t.Errorf("%s contains NUL: %q", what, s)
		}
	}
	check("MessageID", m.MessageID)
	check("Subject", m.Subject)
	check("Text", m.Text)
	check("HTML", m.HTML)
	check("ListID", m.ListID)
	for _, a := range append(append(append([]Address{m.From, m.Sender}, m.To...), m.Cc...), m.ReplyTo...) {
		check("address name", a.Name)
		check("address", a.Address)
		if strings.Contains(a.Address, "=?") {
			t.Errorf("address from an encoded-word: %q", a.Address)
		}
	}
	for _, h := range m.Headers {
		check("header name", h.Name)
		check("header "+h.Name, h.Value)
	}
	for _, a := range m.Attachments {
		check("filename", a.Filename)
		check("content type", a.ContentType)
		if a.Section == "" || a.Size < 0 {
			t.Errorf("attachment %+v: no section or negative size", a)
		}
	}
	if !slices.IsSorted(m.Defects) || len(slices.Compact(slices.Clone(m.Defects))) != len(m.Defects) {
		t.Errorf("defects not sorted and unique: %v", m.Defects)
	}
	if len(m.Key) != 64 {
		t.Errorf("key %q", m.Key)
	}
}

func hasDefect(m *Message, d string) bool { return slices.Contains(m.Defects, d) }

// nested returns a message whose multiparts nest n deep, with a text part at the bottom.
func nested(n int) string {
	var b strings.Builder
	b.WriteString("Subject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "--b%d\r\nContent-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n", i-1, i)
	}
	fmt.Fprintf(&b, "--b%d\r\nContent-Type: text/plain\r\n\r\nbottom\r\n", n-1)
	for i := n - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\r\n", i)
	}
	return b.String()
}

// nestedMessages returns a message whose message/rfc822 parts nest n deep.
func nestedMessages(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "Subject: level %d\r\nContent-Type: message/rfc822\r\n\r\n", i)
	}
	b.WriteString("Subject: bottom\r\n\r\nbottom text\r\n")
	return b.String()
}

func manyParts(n int) string {
	var b strings.Builder
	b.WriteString("Subject: many\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n")
	b.WriteString("--m\r\nContent-Type: text/plain\r\n\r\nbody\r\n")
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "--m\r\nContent-Type: application/octet-stream; name=\"f%d\"\r\n\r\nx\r\n", i)
	}
	b.WriteString("--m--\r\n")
	return b.String()
}

func TestParseTolerance(t *testing.T) {
	manyFields := "Subject: first\r\n" + strings.Repeat("X-Filler: 0123456789012345678901234567890123456789\r\n", 2000) +
		"Content-Type: text/html\r\n\r\nbody\r\n"
	tests := []struct {
		name    string
		msg     string
		lim     Limits
		defects []string // must all be present
		check   func(t *testing.T, m *Message)
	}{
		{
			name: "header larger than the limit keeps the fields read so far",
			msg:  manyFields, lim: Limits{HeaderBytes: 8 << 10},
			defects: []string{"header_too_large"},
			check: func(t *testing.T, m *Message) {
				if m.Subject != "first" || len(m.Headers) >= 2000 || len(m.Headers) < 100 || !m.Truncated {
					t.Errorf("subject %q, %d headers, truncated %v", m.Subject, len(m.Headers), m.Truncated)
				}
				if m.Text != "body\n" {
					t.Errorf("text %q: the body must still be read (as text/plain)", m.Text)
				}
			},
		},
		{
			name: "nesting within the limit is read", msg: nested(30),
			check: func(t *testing.T, m *Message) {
				if m.Text != "bottom" || len(m.Defects) != 0 {
					t.Errorf("text %q, defects %v", m.Text, m.Defects)
				}
			},
		},
		{
			name: "multipart nesting deeper than the limit", msg: nested(40),
			defects: []string{"depth_exceeded"},
			check: func(t *testing.T, m *Message) {
				if m.Text != "" || !m.Truncated || hasDefect(m, "missing_close_boundary") {
					t.Errorf("text %q, truncated %v, defects %v", m.Text, m.Truncated, m.Defects)
				}
			},
		},
		{
			name: "100000 nested multiparts: no deep recursion", msg: nested(100000),
			defects: []string{"depth_exceeded"},
		},
		{
			name: "message/rfc822 nesting deeper than the limit (depths 0 to 10 are listed)", msg: nestedMessages(50), lim: Limits{Depth: 10},
			defects: []string{"depth_exceeded"},
			check: func(t *testing.T, m *Message) {
				if len(m.Attachments) != 11 || m.Subject != "level 0" {
					t.Errorf("subject %q, %d attachments: %+v", m.Subject, len(m.Attachments), m.Attachments)
				}
			},
		},
		{
			name: "more parts than the limit", msg: manyParts(1500),
			defects: []string{"too_many_parts"},
			check: func(t *testing.T, m *Message) {
				if len(m.Attachments) != 999 || m.Text != "body" || !m.Truncated {
					t.Errorf("%d attachments, text %q, truncated %v", len(m.Attachments), m.Text, m.Truncated)
				}
			},
		},
		{
			name: "multipart without boundary is one text part",
			msg: crlfText(`
Subject: nb
Content-Type: multipart/mixed

just text
`),
			defects: []string{"missing_boundary"},
			check: func(t *testing.T, m *Message) {
				if m.Text != "just text\n" {
					t.Errorf("text %q", m.Text)
				}
			},
		},
		{
			name: "missing closing boundary still yields every part",
			msg: crlfText(`
Content-Type: multipart/mixed; boundary=x

--x
Content-Type: text/plain

one
--x
Content-Type: application/pdf; name=a.pdf

pdf
--x
Content-Type: text/plain

two
`),
			defects: []string{"missing_close_boundary"},
			check: func(t *testing.T, m *Message) {
				if m.Text != "one\ntwo" || len(m.Attachments) != 1 || m.Attachments[0].Size != 3 {
					t.Errorf("text %q, attachments %+v", m.Text, m.Attachments)
				}
			},
		},
		{
			name: "inner multipart reusing the outer boundary",
			msg: crlfText(`
Content-Type: multipart/mixed; boundary=same

--same
Content-Type: multipart/alternative; boundary=same

--same
Content-Type: text/plain

inner
--same--
--same
Content-Type: image/gif; name=x.gif

gif
--same--
`),
			check: func(t *testing.T, m *Message) {
				if m.Text != "inner" {
					t.Errorf("text %q", m.Text)
				}
			},
		},
		{
			name: "base64 with junk and bad padding, and the next part still read",
			msg: crlfText(`
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

SGVs!!bG8g*d29y
bGQ
--b
Content-Type: text/html
Content-Transfer-Encoding: BASE64

PHA+b2s8L3A+
--b--
`),
			defects: []string{"bad_encoding"},
			check: func(t *testing.T, m *Message) {
				if m.Text != "Hello world" || m.HTML != "<p>ok</p>" {
					t.Errorf("text %q html %q", m.Text, m.HTML)
				}
			},
		},
		{
			name: "concatenated base64 blocks",
			msg: crlfText(`
Content-Type: text/plain
Content-Transfer-Encoding: base64

SGk=IHRoZXJl
`),
			check: func(t *testing.T, m *Message) {
				if m.Text != "Hi there" {
					t.Errorf("text %q", m.Text)
				}
			},
		},
		{
			name: "quoted-printable with invalid escapes and a trailing soft break",
			msg: crlfText(`
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

a=ZZb =3d =e2=82=ac=
`),
			defects: []string{"bad_encoding"},
			check: func(t *testing.T, m *Message) {
				if m.Text != "a=ZZb = €" {
					t.Errorf("text %q", m.Text)
				}
			},
		},
		{
			name: "unknown charset gives valid UTF-8 with replacement characters",
			msg: "Subject: =?x-no-such?q?abc=FF?= ok\r\nContent-Type: text/plain; charset=x-no-such\r\n" +
				"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9 \xff\xfe ok\r\n",
			defects: []string{"unknown_charset"},
			check: func(t *testing.T, m *Message) {
				if m.Text != "caf\uFFFD \uFFFD\uFFFD ok\n" || m.Subject != "abc\uFFFD ok" {
					t.Errorf("text %q subject %q", m.Text, m.Subject)
				}
			},
		},
		{
			name:    "unknown transfer encoding keeps the raw content",
			msg:     crlfText("Content-Type: text/plain\nContent-Transfer-Encoding: x-uuencode\n\nbegin 644 x\n"),
			defects: []string{"unknown_encoding"},
			check: func(t *testing.T, m *Message) {
				if m.Text != "begin 644 x\n" {
					t.Errorf("text %q", m.Text)
				}
			},
		},
		{
			name: "raw 8-bit and NUL bytes become valid UTF-8 without NUL",
			msg: "Subject: caf\xe9\x00 bar\r\nFrom: \"J\xf6rg\" <j@example.com>\r\nX-Nul: a\x00b\r\n" +
				"Content-Type: text/plain\r\n\r\nnul\x00byte \xc3\x28\r\n",
			check: func(t *testing.T, m *Message) {
				if m.Subject != "caf\uFFFD bar" || m.Text != "nulbyte \uFFFD(\n" || m.Header("x-nul") != "ab" {
					t.Errorf("subject %q text %q x-nul %q", m.Subject, m.Text, m.Header("x-nul"))
				}
				if m.From.Address != "j@example.com" || m.From.Name != "J\uFFFDrg" {
					t.Errorf("from %+v", m.From)
				}
			},
		},
		{
			name:    "encoded-word in the local part never yields an address",
			msg:     crlfText("From: =?utf-8?q?=40attacker.com?=@microsoft.com\nTo: =?utf-8?b?YXR0YWNrZXJAZXZpbC5jb20=?=\n\nx\n"),
			defects: []string{"bad_address"},
			check: func(t *testing.T, m *Message) {
				if m.From != (Address{}) || len(m.To) != 0 {
					t.Errorf("from %+v to %+v", m.From, m.To)
				}
			},
		},
		{
			name: "encoded display name is decoded, the address is not taken from it",
			msg:  crlfText("From: =?utf-8?q?support=40bank.example?= <x@evil.example>\n\nx\n"),
			check: func(t *testing.T, m *Message) {
				if m.From != (Address{Name: "support@bank.example", Address: "x@evil.example"}) {
					t.Errorf("from %+v", m.From)
				}
			},
		},
		{
			name:    "a bad element of an address list drops only that element",
			msg:     crlfText("To: a@example.com, <<broken, \"B\" <b@example.com>\n\nx\n"),
			defects: []string{"bad_address"},
			check: func(t *testing.T, m *Message) {
				want := []Address{{Address: "a@example.com"}, {Name: "B", Address: "b@example.com"}}
				if !reflect.DeepEqual(m.To, want) {
					t.Errorf("to %+v", m.To)
				}
			},
		},
		{
			name:    "duplicate From and Subject: rules see the first",
			msg:     crlfText("From: first@example.com\nSubject: one\nFrom: second@example.com\nSubject: two\n\nx\n"),
			defects: []string{"duplicate_header"},
			check: func(t *testing.T, m *Message) {
				if m.From.Address != "first@example.com" || m.Subject != "one" {
					t.Errorf("from %+v subject %q", m.From, m.Subject)
				}
				if got := m.HeaderValues("subject"); !reflect.DeepEqual(got, []string{"one", "two"}) {
					t.Errorf("subjects %q", got)
				}
			},
		},
		{
			name:    "bad date",
			msg:     crlfText("Date: the day after tomorrow\n\nx\n"),
			defects: []string{"bad_date"},
			check: func(t *testing.T, m *Message) {
				if !m.Date.IsZero() {
					t.Errorf("date %v", m.Date)
				}
			},
		},
		{
			name: "sloppy dates are accepted",
			msg:  crlfText("Date: Wed, 26 Nov 2025 10:00:00 +0100 (CET)\n\nx\n"),
			check: func(t *testing.T, m *Message) {
				if !m.Date.Equal(time.Date(2025, 11, 26, 9, 0, 0, 0, time.UTC)) || len(m.Defects) != 0 {
					t.Errorf("date %v defects %v", m.Date, m.Defects)
				}
			},
		},
		{
			name:    "text capped at TextBytes",
			msg:     "Content-Type: text/plain\r\n\r\n" + strings.Repeat("é", 3000) + "\r\n",
			lim:     Limits{TextBytes: 1001},
			defects: []string{"body_truncated"},
			check: func(t *testing.T, m *Message) {
				if m.Text != strings.Repeat("é", 500) || !m.Truncated {
					t.Errorf("text %d bytes, truncated %v", len(m.Text), m.Truncated)
				}
			},
		},
		{
			name: "total decoded text capped at DecodedBytes",
			msg: crlfText(`
Content-Type: multipart/mixed; boundary=b

--b

` + strings.Repeat("a", 3000) + `
--b

` + strings.Repeat("b", 3000) + `
--b--
`),
			lim:     Limits{DecodedBytes: 4000},
			defects: []string{"body_truncated"},
			check: func(t *testing.T, m *Message) {
				if len(m.Text) > 4001 || !strings.HasPrefix(m.Text, strings.Repeat("a", 3000)) || !m.Truncated {
					t.Errorf("text %d bytes, truncated %v", len(m.Text), m.Truncated)
				}
			},
		},
		{
			name: "compressed attachments are sized, not opened",
			msg: crlfText(`
Content-Type: multipart/mixed; boundary=b

--b
Content-Type: application/gzip; name=x.gz
Content-Transfer-Encoding: base64

H4sIAAAAAAAAA+3BAQ0AAADCoPdPbQ8HFAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--b
Content-Type: application/ms-tnef; name=winmail.dat

binary
--b--
`),
			check: func(t *testing.T, m *Message) {
				want := []Attachment{
					{Filename: "x.gz", ContentType: "application/gzip", Size: 76, Section: "1", Encoding: "base64"},
					{Filename: "winmail.dat", ContentType: "application/ms-tnef", Size: 6, Section: "2", Encoding: "7bit"},
				}
				if !reflect.DeepEqual(m.Attachments, want) {
					t.Errorf("attachments %+v", m.Attachments)
				}
			},
		},
		{
			name: "an mbox From line before the header is skipped",
			msg:  crlfText("From alice@example.com Mon Jan  1 00:00:00 2024\nSubject: s\n\nx\n"),
			check: func(t *testing.T, m *Message) {
				if m.Subject != "s" || len(m.Defects) != 0 {
					t.Errorf("subject %q defects %v", m.Subject, m.Defects)
				}
			},
		},
		{
			name:    "header lines that are not fields",
			msg:     crlfText(" leading continuation\nSubject: s\nnot a field\nX: y\n\nbody\n"),
			defects: []string{"bad_header"},
			check: func(t *testing.T, m *Message) {
				if m.Subject != "s" || m.Header("X") != "y" || m.Text != "body\n" {
					t.Errorf("subject %q x %q text %q", m.Subject, m.Header("X"), m.Text)
				}
			},
		},
		{
			name: "empty input",
			msg:  "",
			check: func(t *testing.T, m *Message) {
				if m.Size != 0 || len(m.Headers) != 0 || m.Text != "" {
					t.Errorf("%+v", m)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, tt.msg, tt.lim)
			for _, d := range tt.defects {
				if !hasDefect(m, d) {
					t.Errorf("defects %v, want %q", m.Defects, d)
				}
			}
			if m.Size != int64(len(tt.msg)) {
				t.Errorf("size %d, want %d", m.Size, len(tt.msg))
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

// TestLineEndings checks that bare LF and bare CR line ends parse like CRLF.
func TestLineEndings(t *testing.T) {
	names, data := fixtures(t)
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			want := mustParse(t, string(data[i]), Limits{})
			for _, eol := range []string{"\n", "\r", "\r\r\n"} {
				msg := strings.ReplaceAll(string(data[i]), "\r\n", eol)
				got := mustParse(t, msg, Limits{})
				if got.Size != int64(len(msg)) {
					t.Errorf("%q: size %d, want %d", eol, got.Size, len(msg))
				}
				got.Size, got.Key = want.Size, want.Key
				if !reflect.DeepEqual(got, want) {
					t.Errorf("line ends %q parse differently:\n got %+v\nwant %+v", eol, got, want)
				}
			}
		})
	}
}

// TestLongLine feeds a 10 MiB line without a newline: the result is bounded by LineBytes.
func TestLongLine(t *testing.T) {
	const n = 10 << 20
	for _, tc := range []struct {
		name, head string
		wantText   int
	}{
		{"in the body", "Subject: long\r\nContent-Type: text/plain\r\n\r\n", 64 << 10},
		{"in the header", "Subject: ", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := io.MultiReader(strings.NewReader(tc.head), io.LimitReader(repeatReader('a'), n))
			var m *Message
			alloc := allocated(func() {
				var err error
				m, err = Parse(r, Limits{})
				if err != nil {
					t.Fatal(err)
				}
			})
			checkInvariants(t, m)
			if !hasDefect(m, "line_too_long") || !m.Truncated || m.Size != int64(len(tc.head)+n) {
				t.Errorf("defects %v truncated %v size %d", m.Defects, m.Truncated, m.Size)
			}
			if len(m.Text) != tc.wantText {
				t.Errorf("text %d bytes, want %d", len(m.Text), tc.wantText)
			}
			if alloc > 4<<20 {
				t.Errorf("allocated %d bytes for a 10 MiB line; want O(LineBytes)", alloc)
			}
		})
	}
}

// TestLargeAttachmentStreams checks that a 64 MiB attachment is sized without holding it.
func TestLargeAttachmentStreams(t *testing.T) {
	head := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n" +
		"--b\r\nContent-Type: application/zip; name=big.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	line := strings.Repeat("QUJD", 19) + "\r\n" // 78 bytes
	const lines = 64 << 20 / 78
	tail := "--b--\r\n"
	r := io.MultiReader(strings.NewReader(head), &repeatLines{line: line, n: lines}, strings.NewReader(tail))
	var m *Message
	alloc := allocated(func() {
		var err error
		if m, err = Parse(r, Limits{}); err != nil {
			t.Fatal(err)
		}
	})
	want := int64(len(line)*lines - 2)
	if len(m.Attachments) != 1 || m.Attachments[0].Size != want || m.Text != "hi" {
		t.Fatalf("attachments %+v (want size %d), text %q", m.Attachments, want, m.Text)
	}
	if alloc > 8<<20 {
		t.Errorf("allocated %d bytes to parse a 64 MiB message", alloc)
	}
}

// allocated returns the bytes allocated while f runs (an upper bound of its peak heap growth).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

type repeatReader byte

func (c repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

type repeatLines struct {
	line string
	n    int
	off  int
}

func (r *repeatLines) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, io.EOF
	}
	k := copy(p, r.line[r.off:])
	r.off += k
	if r.off == len(r.line) {
		r.off = 0
		r.n--
	}
	return k, nil
}

type failingReader struct{ n int }

var errDisk = errors.New("disk on fire")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n <= 0 {
		return 0, errDisk
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

func TestParseReadError(t *testing.T) {
	m, err := Parse(&failingReader{n: 100000}, Limits{})
	if !errors.Is(err, errDisk) || m != nil {
		t.Fatalf("Parse = %v, %v; want the read error", m, err)
	}
}

func TestKey(t *testing.T) {
	msg := crlfText("Message-ID: <k@example.com>\nDate:  Wed, 26 Nov 2025 10:00:00 +0000\n\nbody\n")
	m := mustParse(t, msg, Limits{})
	sum := sha256.Sum256([]byte(fmt.Sprintf("<k@example.com>\x00Wed, 26 Nov 2025 10:00:00 +0000\x00%d", len(msg))))
	if m.Key != hex.EncodeToString(sum[:]) {
		t.Errorf("key %s", m.Key)
	}

	noID := crlfText("From: a@example.com\nSubject: s\n\nbody\n")
	m = mustParse(t, noID, Limits{})
	sum = sha256.Sum256([]byte(fmt.Sprintf("From: a@example.com\r\nSubject: s\r\n\x00%d", len(noID))))
	if m.Key != hex.EncodeToString(sum[:]) {
		t.Errorf("key without Message-ID %s", m.Key)
	}
	// The same mail fetched over IMAP has the same key.
	b := Build(Pieces{Header: []byte(noID[:strings.Index(noID, "\r\n\r\n")+4]), Size: int64(len(noID))}, Limits{})
	if b.Key != m.Key {
		t.Errorf("Build key %s, Parse key %s", b.Key, m.Key)
	}
	other := mustParse(t, noID+"more\r\n", Limits{})
	if other.Key == m.Key {
		t.Error("different sizes, same key")
	}
}

func TestAutomated(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"Auto-Submitted: no", false},
		{"Auto-Submitted: No (a person)", false},
		{"Auto-Submitted: auto-replied", true},
		{"Auto-Submitted: Auto-Generated; owner-email=x@example.com", true},
		{"Auto-Submitted: (comment) auto-notified", true},
		{"Precedence: bulk", true},
		{"Precedence: LIST", true},
		{"Precedence: junk", true},
		{"Precedence: first-class", false},
		{"List-Id: <a.example.com>", true},
		{"List-Unsubscribe: <mailto:u@example.com>", true},
		{"List-Post: NO", true},
		{"List-Archive: <https://example.com>", true},
		{"Return-Path: <>", true},
		{"Return-Path: < >", true},
		{"Return-Path: <a@example.com>", false},
		{"X-Autoreply: yes", true},
		{"X-Autorespond: yes", true},
		{"X-Auto-Response-Suppress: All", true},
		{"Content-Type: multipart/report; report-type=delivery-status; boundary=x", true},
		{"Content-Type: text/plain", false},
		{"Subject: Automatic reply", false},
	}
	for _, tt := range tests {
		m := mustParse(t, tt.header+"\r\n\r\nbody\r\n", Limits{})
		if m.Automated != tt.want {
			t.Errorf("%q: automated %v, want %v", tt.header, m.Automated, tt.want)
		}
	}
	m := mustParse(t, "List-Id: =?utf-8?q?Caf=C3=A9?= <cafe.example.com>\r\n\r\n", Limits{})
	if m.ListID != "Café <cafe.example.com>" {
		t.Errorf("list id %q", m.ListID)
	}
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name    string
		headers string
		id      string
		want    Auth
	}{
		{
			name:    "trusted header",
			headers: "Authentication-Results: mx.google.com;\r\n spf=pass (google.com: domain) smtp.mailfrom=a.example;\r\n dkim=pass header.i=@a.example; dmarc=pass (p=REJECT) header.from=a.example\r\n",
			id:      "mx.google.com",
			want:    Auth{SPF: "pass", DKIM: "pass", DMARC: "pass"},
		},
		{
			name: "a forged header from another authserv-id is ignored",
			headers: "Authentication-Results: mx.google.com; spf=fail; dkim=none; dmarc=fail\r\n" +
				"Authentication-Results: evil.example; spf=pass; dkim=pass; dmarc=pass\r\n",
			id:   "MX.Google.com",
			want: Auth{SPF: "fail", DKIM: "none", DMARC: "fail"},
		},
		{
			name: "only the first trusted header counts",
			headers: "Authentication-Results: mx.example.com 1; spf=softfail\r\n" +
				"Authentication-Results: mx.example.com; spf=pass; dkim=pass; dmarc=pass\r\n",
			id:   "mx.example.com",
			want: Auth{SPF: "softfail"},
		},
		{
			name:    "no trusted header",
			headers: "Authentication-Results: evil.example; spf=pass; dkim=pass; dmarc=pass\r\n",
			id:      "mx.example.com",
		},
		{
			name:    "empty authserv-id trusts nothing",
			headers: "Authentication-Results: ; spf=pass\r\n",
			id:      "",
		},
		{
			name:    "none",
			headers: "Authentication-Results: mx.example.com; none\r\n",
			id:      "mx.example.com",
		},
		{
			name:    "several DKIM signatures: any pass counts",
			headers: "Authentication-Results: mx.example.com; dkim=fail header.d=x; DKIM/1 = Pass header.d=y; spf = TempError\r\n",
			id:      "mx.example.com",
			want:    Auth{SPF: "temperror", DKIM: "pass"},
		},
		{
			name:    "quoted semicolons and comments",
			headers: "Authentication-Results: mx.example.com (a;b); spf=neutral reason=\"x; dkim=pass\"; dmarc=bestguesspass\r\n",
			id:      "mx.example.com",
			want:    Auth{SPF: "neutral", DMARC: "bestguesspass"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, tt.headers+"\r\nbody\r\n", Limits{})
			if got := m.Auth(tt.id); got != tt.want {
				t.Errorf("Auth(%q) = %+v, want %+v", tt.id, got, tt.want)
			}
		})
	}
}

func TestHeaderLookup(t *testing.T) {
	m := mustParse(t, crlfText("X-Tag: =?utf-8?q?a=C3=A9?=\nx-tag:  second\n  folded\nSubject: s\n\n"), Limits{})
	if m.Header("X-TAG") != "aé" || m.Header("missing") != "" {
		t.Errorf("Header: %q %q", m.Header("X-TAG"), m.Header("missing"))
	}
	if got := m.HeaderValues("x-Tag"); !reflect.DeepEqual(got, []string{"aé", "second  folded"}) {
		t.Errorf("HeaderValues: %q", got)
	}
	if m.HeaderValues("missing") != nil {
		t.Error("HeaderValues of a missing field is not nil")
	}
	if m.Headers[1].Name != "x-tag" {
		t.Errorf("names must keep their spelling: %q", m.Headers[1].Name)
	}
}

func TestLimitsDefaults(t *testing.T) {
	if got := (Limits{}).withDefaults(); got != DefaultLimits() {
		t.Errorf("zero limits = %+v", got)
	}
	got := (Limits{Depth: -1, LineBytes: 10, TextBytes: 5}).withDefaults()
	if got.Depth != 32 || got.LineBytes != minLineBytes || got.TextBytes != 5 || got.Parts != 1000 {
		t.Errorf("limits %+v", got)
	}
	if (Limits{}).TextPartBytes() != 4<<20 {
		t.Errorf("TextPartBytes %d", (Limits{}).TextPartBytes())
	}
}
