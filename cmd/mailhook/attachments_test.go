package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

// inlineConfig ships PDFs inline, up to 200KB per message.
const inlineConfig = `state_dir: %s
log: {level: debug, format: text}
http: {listen: ""}
accounts:
  - name: test
    imap:
      host: %s
      port: %s
      security: plain
      username: %s
      password: ${TEST_IMAP_PASSWORD}
      start: all
      idle_refresh: 5s
      backoff: {min: 100ms, max: 1s, auth_min: 1s, quota_min: 1s}
webhooks:
  - name: receiver
    url: %s
    secrets: ["${TEST_WEBHOOK_SECRET}"]
    body: none
    attachments: inline
    attachments_when: 'content_type == "application/pdf"'
    max_inline_bytes: 200KB
    retry: {max_age: 1h, min_backoff: 200ms, max_backoff: 1s}
rules:
  - name: invoices
    when: 'subject contains "invoice"'
    actions:
      - webhook: receiver
`

// invoiceMail has a base64 PDF (section 2), a logo (3) and a forwarded message (4) with a
// quoted-printable PDF (4.2).
func invoiceMail(id string, pdf, nested []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString(pdf)
	var lines strings.Builder
	for len(b64) > 76 {
		lines.WriteString(b64[:76] + "\r\n")
		b64 = b64[76:]
	}
	lines.WriteString(b64 + "\r\n")
	var qp bytes.Buffer
	w := quotedprintable.NewWriter(&qp)
	w.Write(nested)
	w.Close()
	return []byte("From: Vendor <billing@vendor.example>\r\nTo: demo@example.test\r\nSubject: invoice " + id + "\r\n" +
		"Message-ID: <" + id + "@vendor.example>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n" +
		"--outer\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n" +
		"--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + lines.String() +
		"--outer\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=\"logo.png\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n" +
		"--outer\r\nContent-Type: message/rfc822\r\n\r\n" +
		"From: a@example.test\r\nSubject: contract\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n" +
		"--inner\r\nContent-Type: text/plain\r\n\r\nHere.\r\n" +
		"--inner\r\nContent-Type: application/pdf; name=\"contract.pdf\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		qp.String() + "\r\n--inner--\r\n--outer--\r\n")
}

// inlinePayload is what the test reads of a delivered body.
type inlinePayload struct {
	MessageID   string `json:"message_id"`
	Truncated   bool   `json:"truncated"`
	Defects     []string
	Attachments []struct {
		Filename      string  `json:"filename"`
		ContentType   string  `json:"content_type"`
		ContentBase64 *string `json:"content_base64"`
	} `json:"attachments"`
}

// TestDovecotInlineAttachments runs the daemon against Dovecot with a webhook shipping PDFs
// inline: a crash after the attachments were spooled and before the commit leaves nothing stuck
// (the message is fetched and delivered after the restart, the orphan spool removed); the PDFs —
// the one inside the forwarded message/rfc822 too — arrive decoded in content_base64, the logo as
// metadata only; a 503 is retried with the very same bytes, each part fetched from IMAP once;
// an invoice whose PDF exceeds max_inline_bytes is shipped as metadata with truncated and the
// attachments_truncated defect; and once the jobs are done the spool is empty.
func TestDovecotInlineAttachments(t *testing.T) {
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{})
	// The first delivery of the small invoice gets a 503 (deliveries run concurrently, so the
	// answer is chosen by message, not by arrival order).
	var once sync.Once
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret,
		Handler: func(_ int, w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			status := http.StatusOK
			if bytes.Contains(body, []byte("<small@vendor.example>")) {
				once.Do(func() { status = http.StatusServiceUnavailable })
			}
			w.WriteHeader(status)
		}})
	dir := t.TempDir()
	host, port, err := net.SplitHostPort(dc.Addr())
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "mailhook.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, inlineConfig, state, host, port, dc.User(), recv.URL()), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"TEST_IMAP_PASSWORD=" + dc.Password(), "TEST_WEBHOOK_SECRET=" + testSecret}

	pdf := bytes.Repeat([]byte("%PDF-1.7 \x00\x01\xfe\xff"), 10_000) // 120 KB, 160 KB encoded
	nested := []byte("%PDF-1.4 contract = 100% binding\r\n")
	big := bytes.Repeat([]byte("%PDF"), 60_000) // 240 KB: over max_inline_bytes
	if _, err := dc.Append("INBOX", invoiceMail("small", pdf, nested)); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.Append("INBOX", invoiceMail("big", big, nested)); err != nil {
		t.Fatal(err)
	}

	// Crash between spooling and commit.
	d := startDaemon(t, cfg, append(env, "MAILHOOK_FAILPOINT=after_fetch")...)
	err, exited := d.wait(30 * time.Second)
	var ee *exec.ExitError
	if !exited || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("failpoint after_fetch: exited %v with %v; want killed", exited, err)
	}
	if files := filesUnder(filepath.Join(state, "spool", "incoming")); len(files) != 2 {
		t.Fatalf("after the crash the incoming spool holds %v, want the 2 PDFs of the first message", files)
	}

	d = startDaemon(t, cfg, env...)
	eventually(t, 30*time.Second, "3 requests (one 503, two 200)", func() bool { return recv.Len() >= 3 })
	eventually(t, 30*time.Second, "an empty spool", func() bool {
		return len(filesUnder(filepath.Join(state, "spool"))) == 0
	})
	d.terminate()

	reqs := recv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	bodies := map[string][][]byte{}
	for _, r := range reqs {
		if !r.Verified {
			t.Errorf("request %d: signature does not verify: %v", r.N, r.VerifyErr)
		}
		var p inlinePayload
		if err := json.Unmarshal(r.Body, &p); err != nil {
			t.Fatalf("request %d: %v", r.N, err)
		}
		bodies[p.MessageID] = append(bodies[p.MessageID], r.Body)
	}
	small, bigs := bodies["<small@vendor.example>"], bodies["<big@vendor.example>"]
	if len(small) != 2 || len(bigs) != 1 {
		t.Fatalf("deliveries: small %d (want 2: 503 then 200), big %d (want 1)", len(small), len(bigs))
	}
	if !bytes.Equal(small[0], small[1]) {
		t.Error("the retry after 503 sent other bytes")
	}
	var p, pb inlinePayload
	json.Unmarshal(small[1], &p)
	wantContent := map[string][]byte{"invoice.pdf": pdf, "contract.pdf": nested}
	if len(p.Attachments) != 5 || p.Truncated {
		t.Fatalf("small: %d attachments, truncated %v; want 5, false", len(p.Attachments), p.Truncated)
	}
	for _, a := range p.Attachments {
		want, inline := wantContent[a.Filename]
		switch {
		case !inline && a.ContentBase64 != nil:
			t.Errorf("small: %q (%s) shipped with content", a.Filename, a.ContentType)
		case inline && a.ContentBase64 == nil:
			t.Errorf("small: %q shipped without content", a.Filename)
		case inline:
			got, err := base64.StdEncoding.DecodeString(*a.ContentBase64)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("small: %q content differs (%d octets, want %d; %v)", a.Filename, len(got), len(want), err)
			}
		}
	}
	json.Unmarshal(bigs[0], &pb)
	if !pb.Truncated || !strings.Contains(strings.Join(pb.Defects, ","), "attachments_truncated") {
		t.Errorf("big: truncated %v, defects %v; want truncated with attachments_truncated", pb.Truncated, pb.Defects)
	}
	for _, a := range pb.Attachments {
		if (a.Filename == "contract.pdf") != (a.ContentBase64 != nil) {
			t.Errorf("big: %q content present %v (the 240 KB PDF must not be, the small nested one must)", a.Filename, a.ContentBase64 != nil)
		}
	}
	// Each PDF part was fetched once by the run that delivered (and once by the crashed run).
	if n := strings.Count(d.out.String(), `msg="attachment spooled"`); n != 3 {
		t.Errorf("%d attachment fetches after the restart, want 3 (two PDFs of the first message, the nested one of the second)", n)
	}
}

// filesUnder lists the regular files below dir.
func filesUnder(dir string) []string {
	var out []string
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}
