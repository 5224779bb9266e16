package message

import (
	"bytes"
	"encoding/json"
	"mime"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/charset"

	"github.com/mailhook/mailhook/internal/testmail"
)

// TestBuildMatchesParseDovecot is TestBuildMatchesParse against a real server: for every fixture, the Message built from Dovecot's pieces — its header
// section, its BODYSTRUCTURE (computed by Dovecot's own MIME parser, not ours) and the body parts
// BodySections names — equals the Message parsed from the whole file, attachments[].size
// included.
func TestBuildMatchesParseDovecot(t *testing.T) {
	d := testmail.StartDovecot(t, testmail.DovecotOptions{})
	names, data := fixtures(t)
	uids := make([]imap.UID, len(data))
	for i, raw := range data {
		uid, err := d.Append("INBOX", raw)
		if err != nil {
			t.Fatal(err)
		}
		uids[i] = imap.UID(uid)
	}

	conn, err := net.DialTimeout("tcp", d.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Every command below is bounded by this deadline: go-imap has no timeouts of its own.
	if err := conn.SetDeadline(time.Now().Add(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c := imapclient.New(conn, &imapclient.Options{WordDecoder: &mime.WordDecoder{CharsetReader: charset.Reader}})
	t.Cleanup(func() { c.Close() })
	if err := c.Login(d.User(), d.Password()).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}

	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			p := fetchPieces(t, c, uids[i])
			built := Build(p, Limits{})
			parsed, err := Parse(bytes.NewReader(data[i]), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if built.Size != int64(len(data[i])) {
				t.Errorf("RFC822.SIZE %d, file %d bytes", built.Size, len(data[i]))
			}
			if len(built.Attachments) != len(parsed.Attachments) {
				t.Fatalf("attachments: built %+v, parsed %+v", built.Attachments, parsed.Attachments)
			}
			for j := range built.Attachments {
				if b, q := built.Attachments[j], parsed.Attachments[j]; b.Size != q.Size {
					t.Errorf("attachments[%d] %q size: Dovecot says %d, Parse counted %d", j, b.Filename, b.Size, q.Size)
				}
			}
			parsed.Flags, parsed.InternalDate = built.Flags, built.InternalDate
			if !reflect.DeepEqual(parsed, built) {
				pj, _ := json.MarshalIndent(parsed, "", "  ")
				bj, _ := json.MarshalIndent(built, "", "  ")
				t.Errorf("Parse and Build differ\nparse: %s\nbuild: %s", pj, bj)
			}
		})
	}
}
