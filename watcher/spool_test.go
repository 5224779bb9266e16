package watcher_test

import (
	"bytes"
	"encoding/base64"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/watcher"
)

// incoming opens the attachment spool of stateDir as the daemon does and returns its incoming
// directory, for Config.Incoming.
func incoming(tb testing.TB, stateDir string) *spool.Incoming {
	tb.Helper()
	sp, err := spool.Open(stateDir, spool.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	return sp.Incoming()
}

// inlineMail is a message with a base64 PDF (section 2), a base64 logo (3) and a forwarded
// message (4) whose parts are a text (4.1) and a quoted-printable PDF (4.2).
func inlineMail(pdf, logo, nested []byte) []byte {
	b64 := func(b []byte) string {
		s := base64.StdEncoding.EncodeToString(b)
		var out strings.Builder
		for len(s) > 76 {
			out.WriteString(s[:76] + "\r\n")
			s = s[76:]
		}
		return out.String() + s + "\r\n"
	}
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	w.Write(nested)
	w.Close()
	return []byte("From: Vendor <billing@vendor.example>\r\nTo: demo@example.test\r\nSubject: invoice\r\n" +
		"Message-ID: <inline@vendor.example>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n" +
		"--outer\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64(pdf) +
		"--outer\r\nContent-Type: image/png; name=\"logo.png\"\r\nContent-Disposition: inline; filename=\"logo.png\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + b64(logo) +
		"--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" +
		"From: Someone <a@example.test>\r\nSubject: the contract\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n" +
		"--inner\r\nContent-Type: text/plain\r\n\r\nHere it is.\r\n" +
		"--inner\r\nContent-Type: application/pdf; name=\"contract.pdf\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		qp.String() + "\r\n--inner--\r\n" +
		"--outer--\r\n")
}

// pdfsOnly is an inline choice (Matched.Inline) of the PDFs, counting its calls.
func pdfsOnly(calls *atomic.Int64) func(ev *watcher.Event) []message.Attachment {
	return func(ev *watcher.Event) []message.Attachment {
		calls.Add(1)
		var out []message.Attachment
		for _, a := range ev.Message.Attachments {
			if a.ContentType == "application/pdf" {
				out = append(out, a)
			}
		}
		return out
	}
}

// TestDovecotInlineSpooled (Dovecot: imapmemserver cannot fetch parts inside a message/rfc822
// part): the attachments the match ships inline — a nested one inside a forwarded
// message/rfc822 included — reach the Handler as fsynced files holding the decoded content
// (base64 and quoted-printable); an attachment not chosen is not fetched; the files are gone
// after the commit.
func TestDovecotInlineSpooled(t *testing.T) {
	pdf := bytes.Repeat([]byte("%PDF-1.7 invoice \x00\xff"), 5000)
	logo := bytes.Repeat([]byte{0x89, 'P', 'N', 'G'}, 50_000) // 200 KB, never fetched
	nested := []byte("%PDF-1.4 contract = 100% binding\r\nline two with =3D and trailing space \r\n")
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	var calls atomic.Int64
	stateDir := t.TempDir()
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Plan = watcher.Plan{Inline: true}
	rec.inline = pdfsOnly(&calls)
	cfg.Incoming = incoming(t, stateDir)
	var mu sync.Mutex
	got := map[string][]byte{}
	rec.hook = func(ev *watcher.Event) {
		mu.Lock()
		defer mu.Unlock()
		for sec, path := range ev.Spooled {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("section %s: %v", sec, err)
			}
			got[sec] = b
		}
	}
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)
	waitState(t, w, watcher.StateIdle)
	before := w.Status().BytesRead

	raw := inlineMail(pdf, logo, nested)
	uid, err := srv.Append("INBOX", raw)
	if err != nil {
		t.Fatal(err)
	}
	rec.waitUIDs(t, uid)
	eventually(t, "commit", func() bool { return len(st.committedUIDs()) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || !bytes.Equal(got["2"], pdf) || !bytes.Equal(got["4.2"], nested) {
		t.Errorf("spooled sections %d: 2 → %d octets (want %d), 4.2 → %q (want %q)",
			len(got), len(got["2"]), len(pdf), got["4.2"], nested)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("inline choice made %d times, want 1", n)
	}
	if read := w.Status().BytesRead - before; read >= int64(len(raw)) {
		t.Errorf("read %d bytes of a %d-byte message: the logo was fetched", read, len(raw))
	}
	eventually(t, "spool emptied", func() bool {
		entries, _ := os.ReadDir(filepath.Join(stateDir, "spool", "incoming", "daemon"))
		return len(entries) == 0
	})
}

// TestDovecotInlineWithinMaxMessageSize: attachments that do not fit in what max_message_size leaves
// after the header are not fetched (the Handler ships them as metadata), and what fits is.
func TestDovecotInlineWithinMaxMessageSize(t *testing.T) {
	pdf := bytes.Repeat([]byte("A"), 30_000)   // ~40 KB encoded: does not fit
	nested := bytes.Repeat([]byte("b"), 2_000) // fits
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	logs := &syncBuffer{}
	st, rec := newFakeState(), newRecorder()
	var calls atomic.Int64
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Start = watcher.StartAll
	cfg.Plan = watcher.Plan{Inline: true}
	rec.inline = pdfsOnly(&calls)
	cfg.Incoming = incoming(t, t.TempDir())
	cfg.MaxMessageSize = 20_000
	var spooled []string
	var mu sync.Mutex
	rec.hook = func(ev *watcher.Event) {
		mu.Lock()
		defer mu.Unlock()
		for sec := range ev.Spooled {
			spooled = append(spooled, sec)
		}
	}
	uid, err := srv.Append("INBOX", inlineMail(pdf, []byte("png"), nested))
	if err != nil {
		t.Fatal(err)
	}
	w := mustNew(t, cfg, st, rec)
	runWatcher(t, w, logs)
	rec.waitUIDs(t, uid)
	mu.Lock()
	defer mu.Unlock()
	if len(spooled) != 1 || spooled[0] != "4.2" {
		t.Errorf("spooled %v, want only section 4.2", spooled)
	}
}
