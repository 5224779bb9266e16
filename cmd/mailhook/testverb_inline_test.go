package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

// `mailhook test` shows, for a webhook with attachments: inline, exactly the body the daemon
// sends: the daemon delivers a message with a 3,412-byte PDF from Dovecot to a receiver, and
// `test --uid` of that message prints the very bytes the receiver got; `test FILE.eml` of the
// same message the same bytes but for the fields only a mailbox gives (id, uid, uidvalidity, sizes) —
// no "truncated" and no attachments_truncated, the PDF's content inline.
func TestTestShowsTheBodyTheDaemonSends(t *testing.T) {
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	dir := t.TempDir()
	host, port, err := net.SplitHostPort(dc.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "mailhook.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, inlineConfig, filepath.Join(dir, "state"), host, port, dc.User(), recv.URL()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"TEST_IMAP_PASSWORD=" + dc.Password(), "TEST_WEBHOOK_SECRET=" + testSecret}
	raw := invoiceMail("pdf", bytes.Repeat([]byte("%PDF"), 853), []byte("%PDF-1.4 contract\r\n")) // 3,412 bytes
	eml := filepath.Join(dir, "invoice.eml")
	if err := os.WriteFile(eml, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	uid, err := dc.Append("INBOX", raw)
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, cfg, env...)
	eventually(t, 30*time.Second, "the delivery", func() bool { return recv.Len() >= 1 })
	d.terminate()
	sent := recv.Requests()[0].Body

	body := func(args ...string) []byte {
		t.Helper()
		cmd := exec.Command(binPath, append([]string{"test", "-c", cfg, "--account", "test", "--json"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mailhook test %v: %v\n%s", args, err, out)
		}
		var e struct {
			Deliveries []struct {
				Body json.RawMessage `json:"body"`
			} `json:"deliveries"`
		}
		if err := json.Unmarshal(out, &e); err != nil || len(e.Deliveries) != 1 {
			t.Fatalf("mailhook test %v: %v, %d deliveries\n%s", args, err, len(e.Deliveries), out)
		}
		return e.Deliveries[0].Body
	}
	if live := body("--uid", fmt.Sprint(uid)); !bytes.Equal(live, sent) {
		t.Errorf("test --uid %d shows another body than the daemon sent:\ntest: %.600s\nsent: %.600s", uid, live, sent)
	}
	// What only the mailbox gives: id, uid, uidvalidity, and the sizes its BODYSTRUCTURE reports
	// (Dovecot counts 2 octets more than the .eml parser for the forwarded message/rfc822 part:
	// the line break before the closing boundary).
	mailboxFields := regexp.MustCompile(`"(id|uid|uidvalidity|size)":("[^"]*"|[0-9]+)`)
	file := body(eml)
	if a, b := mailboxFields.ReplaceAll(file, nil), mailboxFields.ReplaceAll(sent, nil); !bytes.Equal(a, b) {
		i := 0
		for i < min(len(a), len(b)) && a[i] == b[i] {
			i++
		}
		t.Errorf("test FILE shows another body than the daemon sent (id, uid, uidvalidity, sizes aside), from octet %d:\ntest: %.300s\nsent: %.300s", i, a[i-120:], b[i-120:])
	}
	if bytes.Contains(file, []byte("attachments_truncated")) || !bytes.Contains(file, []byte(`"truncated":false`)) {
		t.Errorf("test FILE: %.600s", file)
	}
}
