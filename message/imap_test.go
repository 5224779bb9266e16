package message

import (
	"bytes"
	"encoding/json"
	"mime"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-message/charset"
)

// startIMAP runs an in-memory IMAP server on loopback and returns a logged-in client with INBOX
// selected after appending msgs to it.
func startIMAP(t *testing.T, msgs [][]byte) *imapclient.Client {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("user", "secret")
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("IMAP server did not stop")
		}
	})

	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Every command below is bounded by this deadline: go-imap has no timeouts of its own.
	if err := conn.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, &imapclient.Options{
		WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader},
	})
	t.Cleanup(func() { c.Close() })
	if err := c.Login("user", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		cmd := c.Append("INBOX", int64(len(m)), &imap.AppendOptions{
			Flags: []imap.Flag{imap.FlagSeen},
			Time:  time.Date(2025, 12, 1, 10, i, 0, 0, time.UTC),
		})
		if _, err := cmd.Write(m); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// fetchPieces fetches one message the way the watcher does: a first pass for the header,
// BODYSTRUCTURE, size, flags and date, then a second pass for the body sections only.
func fetchPieces(t *testing.T, c *imapclient.Client, uid imap.UID) Pieces {
	t.Helper()
	set := imap.UIDSetNum(uid)
	bufs, err := c.Fetch(set, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierHeader, Peek: true}},
	}).Collect()
	if err != nil || len(bufs) != 1 {
		t.Fatalf("fetch uid %d: %v (%d messages)", uid, err, len(bufs))
	}
	b := bufs[0]
	p := Pieces{
		Header:       b.BodySection[0].Bytes,
		Structure:    b.BodyStructure,
		Size:         b.RFC822Size,
		InternalDate: b.InternalDate,
		Parts:        map[string][]byte{},
	}
	for _, f := range b.Flags {
		p.Flags = append(p.Flags, string(f))
	}
	var items []*imap.FetchItemBodySection
	for _, sec := range Sections(p.Header, b.BodyStructure, Limits{}, Wanted{Text: true, HTML: true, Reports: true, Calendar: true}) {
		item := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Size: sec.Max}}
		name, isHeader := strings.CutSuffix(sec.Name, ".HEADER")
		item.Part = sectionPath(t, name)
		if isHeader {
			item.Specifier = imap.PartSpecifierHeader
		}
		items = append(items, item)
	}
	if len(items) == 0 {
		return p
	}
	bufs, err = c.Fetch(set, &imap.FetchOptions{UID: true, BodySection: items}).Collect()
	if err != nil || len(bufs) != 1 {
		t.Fatalf("fetch parts of uid %d: %v", uid, err)
	}
	for _, s := range bufs[0].BodySection {
		name := sectionString(s.Section.Part)
		if s.Section.Specifier == imap.PartSpecifierHeader {
			name += ".HEADER"
		}
		p.Parts[name] = s.Bytes
	}
	return p
}

func sectionPath(t testing.TB, sec string) []int {
	var path []int
	for _, s := range strings.Split(sec, ".") {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("bad section %q", sec)
		}
		path = append(path, n)
	}
	return path
}

func sectionString(path []int) string {
	s := make([]string, len(path))
	for i, n := range path {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}

func fixtures(t *testing.T) (names []string, data [][]byte) {
	t.Helper()
	files, err := filepath.Glob("testdata/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, filepath.Base(f))
		data = append(data, b)
	}
	return names, data
}

// TestBuildMatchesParse checks the contract between the two builders: for every fixture, the
// Message built from IMAP pieces (fetched from a real IMAP server over loopback, with only the
// body sections BodySections names) equals the Message parsed from the whole file.
func TestBuildMatchesParse(t *testing.T) {
	names, data := fixtures(t)
	c := startIMAP(t, data)
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			p := fetchPieces(t, c, imap.UID(i+1))
			built := Build(p, Limits{})
			parsed, err := Parse(bytes.NewReader(data[i]), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if len(built.Flags) != 1 || built.Flags[0] != string(imap.FlagSeen) || built.InternalDate.IsZero() {
				t.Errorf("Build lost IMAP metadata: flags %v, internal date %v", built.Flags, built.InternalDate)
			}
			if !built.TextFetched || !built.HTMLFetched {
				t.Errorf("TextFetched %v, HTMLFetched %v, want both true", built.TextFetched, built.HTMLFetched)
			}
			parsed.Flags, parsed.InternalDate = built.Flags, built.InternalDate
			if !reflect.DeepEqual(parsed, built) {
				pj, _ := json.MarshalIndent(parsed, "", "  ")
				bj, _ := json.MarshalIndent(built, "", "  ")
				t.Errorf("Parse and Build differ\nparse: %s\nbuild: %s", pj, bj)
			}

			// Without the body parts, Build still knows everything but the bodies.
			p.Parts = nil
			noBody := Build(p, Limits{})
			text, html := BodySections(p.Structure)
			if noBody.TextFetched != (len(text) == 0) || noBody.HTMLFetched != (len(html) == 0) {
				t.Errorf("without parts: TextFetched %v HTMLFetched %v for sections %v %v",
					noBody.TextFetched, noBody.HTMLFetched, text, html)
			}
			if noBody.Key != parsed.Key || !reflect.DeepEqual(noBody.Attachments, parsed.Attachments) {
				t.Errorf("without parts: key or attachments differ")
			}
		})
	}
}
