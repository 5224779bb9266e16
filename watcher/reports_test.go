package watcher_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/internal/fixture"
	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/watcher"
)

// TestDovecotReportsPlan: with Plan.Reports and Plan.Calendar, a bounce, a complaint, an
// invitation and a plain-text bounce notice are understood from their small parts only — the
// report part, the returned message's header (BODY.PEEK[3.HEADER]), the calendar part, the
// notice's text — never the 300 KB body of the returned message; plain mail costs nothing more.
// Bytes as Dovecot counted them, against a header-only run over the same mailbox.
func TestDovecotReportsPlan(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	fixture := func(name string) []byte {
		b, err := os.ReadFile(fixture.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// The Postfix bounce returns the whole message: give it a 300 KB body.
	bounce := fixture("bounce-postfix.eml")
	big := strings.Repeat("Line of the returned message that no rule on bounce may download.\r\n", 4600)
	bounce = bytes.Replace(bounce, []byte("Total EUR 120.50.\r\n"), []byte("Total EUR 120.50.\r\n"+big), 1)
	mails := [][]byte{bounce, fixture("arf-complaint.eml"), fixture("invite-google.eml"),
		fixture("bounce-exim.eml"), fixture("plain.eml")}
	for _, m := range mails {
		if _, err := srv.Append("INBOX", m); err != nil {
			t.Fatal(err)
		}
	}
	none, recNone := runPlan(t, srv, watcher.Plan{}, len(mails))
	full, rec := runPlan(t, srv, watcher.Plan{Reports: true, Calendar: true}, len(mails))

	byUID := func(r *recorder) map[uint32]*message.Message {
		r.mu.Lock()
		defer r.mu.Unlock()
		out := map[uint32]*message.Message{}
		for _, ev := range r.events {
			out[ev.UID] = ev.Message
		}
		return out
	}
	for uid, m := range byUID(recNone) {
		if m.Bounce != nil || m.Complaint != nil || m.Calendar != nil {
			t.Errorf("header-only plan: uid %d has a report it did not fetch", uid)
		}
	}
	got := byUID(rec)
	if b := got[1].Bounce; b == nil || b.Kind != "hard" || b.OriginalMessageID != "<inv-2026-0042.1764663245@shop.example.com>" ||
		len(b.Recipients) != 1 || b.Recipients[0].Status != "5.1.1" {
		t.Errorf("bounce: %+v", b)
	}
	if c := got[2].Complaint; c == nil || c.FeedbackType != "abuse" || c.OriginalMessageID != "<news-2026-12.78@shop.example.com>" {
		t.Errorf("complaint: %+v", c)
	}
	if c := got[3].Calendar; c == nil || c.Start != "2026-12-10T09:00:00Z" || c.Method != "REQUEST" {
		t.Errorf("calendar: %+v", c)
	}
	if b := got[4].Bounce; b == nil || b.Recipients[0].Address != "ops-oncall@example.net" || b.Recipients[0].Status != "5.1.1" {
		t.Errorf("Exim notice: %+v", b)
	}
	if m := got[5]; m.Bounce != nil || m.Calendar != nil || m.TextFetched {
		t.Errorf("plain mail: bounce %v calendar %v text fetched %v", m.Bounce, m.Calendar, m.TextFetched)
	}
	// The report parts, the returned header, the calendar part and the notice's text are a few KB.
	extra := full.served - none.served
	if extra <= 0 || extra > 16<<10 {
		t.Errorf("reports plan read %d bytes more than header-only (%d); want a few KB, not the %d-byte returned body",
			extra, none.served, len(big))
	}
	t.Logf("header-only %d bytes, with reports and calendar %d (+%d); the returned body alone is %d", none.served, full.served, extra, len(big))
}

// A rule reading reply_text fetches, per message, the text/plain body, or the text/html body of
// a message without one (an html-only reply's text comes from its quote markup), never both, as
// Dovecot serves them.
func TestDovecotReplyTextPlan(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	for _, name := range []string{"alternative.eml", "cp1252-html.eml"} {
		raw, err := os.ReadFile(fixture.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Append("INBOX", raw); err != nil {
			t.Fatal(err)
		}
	}
	_, rec := runPlan(t, srv, watcher.Plan{ReplyText: true}, 2)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, ev := range rec.events {
		m := ev.Message
		switch ev.UID {
		case 1: // text and html: the text only
			if !m.TextFetched || m.HTMLFetched || m.Text == "" {
				t.Errorf("alternative: text fetched %v (%d bytes), html fetched %v", m.TextFetched, len(m.Text), m.HTMLFetched)
			}
		case 2: // html only: the html
			if !m.HTMLFetched || message.ReplyText(m.Text, m.HTML) == "" {
				t.Errorf("html-only: html fetched %v, reply text %q", m.HTMLFetched, message.ReplyText(m.Text, m.HTML))
			}
		}
	}
}
