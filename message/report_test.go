package message

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func parseFile(t *testing.T, name string) *Message {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(bytes.NewReader(raw), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The bounce fixtures, as the servers named write them: standard reports (Postfix, Gmail,
// Exchange, RFC 6533) and plain-text notices (Exim, qmail, old Exchange).
func TestBounceFixtures(t *testing.T) {
	for _, c := range []struct {
		file, kind, mta, origID, addr, action, status, diagPrefix string
	}{
		{"bounce-postfix.eml", "hard", "mx1.example.net", "<inv-2026-0042.1764663245@shop.example.com>",
			"jane.doe@example.org", "failed", "5.1.1", "550 5.1.1 <jane.doe@example.org>: Recipient address rejected"},
		{"bounce-gmail.eml", "hard", "googlemail.com", "<CAB1x2y3-alert-42@mail.gmail.com>",
			"no-such-user@example.net", "failed", "5.1.1", "The email account that you tried to reach does not exist. Please try double-checking"},
		{"bounce-exchange.eml", "hard", "EX01.corp.example.com", "<weekly-report-49@example.com>",
			"m.mueller@corp.example.com", "failed", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound"},
		{"bounce-global.eml", "hard", "mx.example.de", "<bestellung-991@shop.example.de>",
			"jürgen@bücher.example", "failed", "5.1.1", "550 5.1.1 Benutzer unbekannt"},
		{"bounce-delayed.eml", "delayed", "mx1.example.net", "<inv-2026-0043.1764663300@shop.example.com>",
			"accounts@slow.example.org", "delayed", "4.4.1", "connect to mx.slow.example.org"},
		{"bounce-exim.eml", "hard", "", "<E1tXyZZ-000ABB-Pq@smtp.example.com>",
			"ops-oncall@example.net", "failed", "5.1.1", "550 5.1.1 <ops-oncall@example.net>: Recipient address rejected"},
		{"bounce-qmail.eml", "hard", "mail.example.org", "<news-2026-12.77@shop.example.com>",
			"old.customer@example.org", "failed", "5.7.1", "550 5.7.1 <old.customer@example.org>: Mailbox disabled"},
		{"bounce-exchange-text.eml", "hard", "MAIL2010.legacy.example.com", "<ticket-5521-update-3@example.com>",
			"k.schmidt@legacy.example.com", "failed", "5.1.1", "550 5.1.1 RESOLVER.ADR.RecipNotFound"},
	} {
		t.Run(c.file, func(t *testing.T) {
			m := parseFile(t, c.file)
			b := m.Bounce
			if b == nil {
				t.Fatalf("no bounce; defects %v", m.Defects)
			}
			if b.Kind != c.kind || b.ReportingMTA != c.mta || b.OriginalMessageID != c.origID || len(b.Recipients) != 1 {
				t.Fatalf("bounce %+v", b)
			}
			r := b.Recipients[0]
			if r.Address != c.addr || r.Action != c.action || r.Status != c.status || !strings.HasPrefix(r.Diagnostic, c.diagPrefix) {
				t.Errorf("recipient %+v", r)
			}
			if m.Complaint != nil || m.Calendar != nil || !m.Automated && c.file != "bounce-exchange-text.eml" {
				t.Errorf("complaint %v calendar %v automated %v", m.Complaint, m.Calendar, m.Automated)
			}
		})
	}
}

func TestComplaintFixture(t *testing.T) {
	m := parseFile(t, "arf-complaint.eml")
	want := &Complaint{FeedbackType: "abuse", UserAgent: "Yahoo!-Mail-Feedback/2.0",
		OriginalMailFrom: "bounces+77@shop.example.com", OriginalRcptTo: "reader@example-isp.com",
		ArrivalDate: "2026-12-03T08:10:01Z", ReportedDomain: "shop.example.com",
		OriginalMessageID: "<news-2026-12.78@shop.example.com>"}
	if !reflect.DeepEqual(m.Complaint, want) {
		t.Errorf("complaint %+v\nwant %+v", m.Complaint, want)
	}
	if m.Bounce != nil {
		t.Errorf("an ARF report is no bounce: %+v", m.Bounce)
	}
}

func TestBrokenReports(t *testing.T) {
	for file, defect := range map[string]string{"bad-dsn.eml": "bad_dsn", "bad-calendar.eml": "bad_calendar"} {
		m := parseFile(t, file)
		if m.Bounce != nil || m.Calendar != nil || !containsString(m.Defects, defect) {
			t.Errorf("%s: bounce %v calendar %v defects %v; want null and %s", file, m.Bounce, m.Calendar, m.Defects, defect)
		}
	}
	for _, c := range []struct{ text, defect string }{
		{"Reporting-MTA: dns; x\n\nAction: failed\n", "bad_arf"}, // an ARF part without Feedback-Type
	} {
		raw := "From: a@b\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=x\r\n\r\n" +
			"--x\r\nContent-Type: message/feedback-report\r\n\r\n" + strings.ReplaceAll(c.text, "\n", "\r\n") + "--x--\r\n"
		m, err := Parse(strings.NewReader(raw), Limits{})
		if err != nil || m.Complaint != nil || !containsString(m.Defects, c.defect) {
			t.Errorf("complaint %v defects %v err %v; want null and %s", m.Complaint, m.Defects, err, c.defect)
		}
	}
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestParseDSN(t *testing.T) {
	rcpt := func(action, status string) string {
		return fmt.Sprintf("Final-Recipient: rfc822; a@example.org\nAction: %s\nStatus: %s\n\n", action, status)
	}
	head := "Reporting-MTA: dns; mx.example\n\n"
	for _, c := range []struct {
		name, body, kind string
		valid            bool
	}{
		{"hard", head + rcpt("failed", "5.1.1"), "hard", true},
		{"soft", head + rcpt("failed", "4.2.2"), "soft", true},
		{"hard wins over soft", head + rcpt("failed", "4.2.2") + rcpt("failed", "5.2.1"), "hard", true},
		{"failed without status is permanent", head + "Final-Recipient: rfc822; a@b\nAction: failed\n", "hard", true},
		{"delayed", head + rcpt("delayed", "4.4.7"), "delayed", true},
		{"soft wins over delayed", head + rcpt("delayed", "4.4.7") + rcpt("failed", "4.4.1"), "soft", true},
		{"success notice is no bounce", head + rcpt("delivered", "2.0.0"), "", true},
		{"no recipient", head, "", false},
		{"garbage", "<html>not a report</html>", "", false},
		{"recipient in the first group", "Reporting-MTA: dns; mx\nFinal-Recipient: rfc822; a@b\nAction: failed\nStatus: 5.0.0\n", "hard", true},
	} {
		b, valid := parseDSN(c.body)
		kind := ""
		if b != nil {
			kind = b.Kind
		}
		if kind != c.kind || valid != c.valid {
			t.Errorf("%s: kind %q valid %v; want %q %v", c.name, kind, valid, c.kind, c.valid)
		}
	}
	// Recipients are capped.
	body := head + strings.Repeat(rcpt("failed", "5.1.1"), 3*MaxReportRecipients)
	if b, _ := parseDSN(body); b == nil || len(b.Recipients) != MaxReportRecipients {
		t.Errorf("recipients not capped at %d", MaxReportRecipients)
	}
}

// Sections for Reports asks for the report part and the returned message's header, never its body; for
// a plain-text notice, the text; for other mail, nothing.
func TestReportSections(t *testing.T) {
	for _, c := range []struct {
		file string
		want []Section
	}{
		{"bounce-postfix.eml", []Section{{"2", ReportBytes}, {"3.HEADER", ReportBytes}}},
		{"bounce-gmail.eml", []Section{{"2", ReportBytes}, {"3", ReportBytes}}},
		{"bounce-exchange.eml", []Section{{"2", ReportBytes}, {"3.HEADER", ReportBytes}}},
		{"arf-complaint.eml", []Section{{"2", ReportBytes}, {"3.HEADER", ReportBytes}}},
		{"bounce-exim.eml", []Section{{"1", DefaultLimits().TextPartBytes()}}},
		{"bounce-qmail.eml", []Section{{"1", DefaultLimits().TextPartBytes()}}},
		{"plain.eml", nil},
		{"invite-google.eml", nil},
		{"forward.eml", nil},
	} {
		raw, err := os.ReadFile("testdata/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		header, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		got := Sections(header, structureOf(t, raw), Limits{}, Wanted{Reports: true})
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Sections(Reports) %v, want %v", c.file, got, c.want)
		}
	}
}

// structureOf is the BODYSTRUCTURE Parse computes for a whole message.
func structureOf(t *testing.T, raw []byte) imap.BodyStructure {
	t.Helper()
	lim := DefaultLimits()
	p := &parser{lim: lim, lr: newLineReader(bytes.NewReader(raw), lim.LineBytes),
		texts: map[*imap.BodyStructureSinglePart]*parsedText{}, raws: map[*imap.BodyStructureSinglePart][]byte{},
		innerIDs: map[*imap.BodyStructureSinglePart]string{}}
	p.dec = newDecoder(&p.d)
	p.run()
	return p.root
}

func TestCalendarFixtures(t *testing.T) {
	g := parseFile(t, "invite-google.eml").Calendar
	if g == nil || g.Method != "REQUEST" || g.Summary != "Release review" || g.Location != "Room 4.12, Berlin office" ||
		g.Start != "2026-12-10T09:00:00Z" || g.End != "2026-12-10T10:00:00Z" || g.AllDay ||
		g.Organizer != (Address{"Anna Schmidt", "anna@example.com"}) || len(g.Attendees) != 2 ||
		g.Attendees[1] != (CalendarAttendee{"bob@example.com", "bob@example.com", "needs-action", "req-participant"}) ||
		g.Status != "confirmed" || g.UID != "7kukuqrfedlm2f9t0vbdrnvd5s@google.com" {
		t.Errorf("google invite: %+v", g)
	}
	// Outlook: base64, a Windows TZID defined by the calendar's VTIMEZONE, a date in summer time.
	o := parseFile(t, "invite-outlook.eml").Calendar
	if o == nil || o.Start != "2027-03-15T16:00:00Z" || o.End != "2027-03-15T16:30:00Z" ||
		o.RRule != "FREQ=WEEKLY;UNTIL=20270628T160000Z;INTERVAL=1;BYDAY=MO;WKST=SU" || len(o.Attendees) != 2 ||
		o.Attendees[1].Role != "opt-participant" {
		t.Errorf("outlook invite: %+v", o)
	}
}

func TestCalendarTimes(t *testing.T) {
	vtz := "BEGIN:VTIMEZONE\nTZID:(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna\n" +
		"BEGIN:STANDARD\nDTSTART:16011028T030000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10\nEND:STANDARD\n" +
		"BEGIN:DAYLIGHT\nDTSTART:16010325T020000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\nRRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3\nEND:DAYLIGHT\n" +
		"END:VTIMEZONE\n"
	for _, c := range []struct {
		name, zones, props, start, end string
		allDay                         bool
	}{
		{"IANA", "", "DTSTART;TZID=America/New_York:20260704T120000\nDTEND;TZID=America/New_York:20260704T130000\n",
			"2026-07-04T16:00:00Z", "2026-07-04T17:00:00Z", false},
		{"UTC", "", "DTSTART:20261210T090000Z\nDURATION:PT1H30M\n", "2026-12-10T09:00:00Z", "2026-12-10T10:30:00Z", false},
		{"Windows name without VTIMEZONE", "", "DTSTART;TZID=W. Europe Standard Time:20260710T090000\n",
			"2026-07-10T07:00:00Z", "", false},
		{"Windows name, winter", "", "DTSTART;TZID=\"Tokyo Standard Time\":20261210T090000\n", "2026-12-10T00:00:00Z", "", false},
		{"display name from VTIMEZONE, summer", vtz, "DTSTART;TZID=\"(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna\":20260710T090000\n",
			"2026-07-10T07:00:00Z", "", false},
		{"display name from VTIMEZONE, winter", vtz, "DTSTART;TZID=\"(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna\":20261210T090000\n",
			"2026-12-10T08:00:00Z", "", false},
		{"floating", "", "DTSTART:20261210T090000\n", "2026-12-10T09:00:00Z", "", false},
		{"unknown zone", "", "DTSTART;TZID=Mars/Olympus:20261210T090000\n", "2026-12-10T09:00:00Z", "", false},
		{"all day", "", "DTSTART;VALUE=DATE:20261224\nDTEND;VALUE=DATE:20261225\n", "2026-12-24", "2026-12-25", true},
		{"all day without end", "", "DTSTART;VALUE=DATE:20261224\n", "2026-12-24", "2026-12-25", true},
	} {
		text := "BEGIN:VCALENDAR\nVERSION:2.0\n" + c.zones + "BEGIN:VEVENT\nUID:x\n" + c.props + "END:VEVENT\nEND:VCALENDAR\n"
		cal, valid := parseCalendar(text)
		if !valid || cal == nil || cal.Start != c.start || cal.End != c.end || cal.AllDay != c.allDay {
			t.Errorf("%s: %+v valid %v; want start %s end %s all_day %v", c.name, cal, valid, c.start, c.end, c.allDay)
		}
	}
	if cal, valid := parseCalendar("BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n"); valid || cal == nil || cal.Summary != "x" {
		t.Errorf("an event without DTSTART: %+v valid %v; want its fields and invalid", cal, valid)
	}
	if cal, valid := parseCalendar("BEGIN:VCALENDAR\nBEGIN:VTODO\nEND:VTODO\nEND:VCALENDAR\n"); !valid || cal != nil {
		t.Errorf("a calendar without an event: %+v valid %v; want null, valid", cal, valid)
	}
	deep := strings.Repeat("BEGIN:VX\n", 10000) + strings.Repeat("END:VX\n", 10000)
	if cal, valid := parseCalendar("BEGIN:VCALENDAR\n" + deep + "END:VCALENDAR\n"); valid || cal != nil {
		t.Errorf("deep nesting: %+v valid %v; want refused", cal, valid)
	}
}

// Every Windows zone name maps to a zone this machine's tzdata knows.
func TestWindowsZonesLoad(t *testing.T) {
	for win, iana := range windowsZones {
		if _, err := time.LoadLocation(iana); err != nil {
			t.Errorf("%q → %q: %v", win, iana, err)
		}
	}
}

func TestNthWeekday(t *testing.T) {
	for _, c := range []struct {
		y    int
		m    time.Month
		n    int
		wd   time.Weekday
		want int
	}{
		{2026, time.March, -1, time.Sunday, 29}, {2026, time.October, -1, time.Sunday, 25},
		{2027, time.March, 2, time.Sunday, 14}, {2026, time.November, 1, time.Sunday, 1},
		{2026, time.February, 4, time.Saturday, 28},
	} {
		if got, ok := nthWeekday(c.y, c.m, c.n, c.wd); !ok || got != c.want {
			t.Errorf("%d %v %d %v: %d, want %d", c.y, c.m, c.n, c.wd, got, c.want)
		}
	}
	if _, ok := nthWeekday(2026, time.February, 5, time.Monday); ok {
		t.Error("a fifth Monday in February 2026")
	}
}

// A notice is recognised by its subject, RFC 2047-encoded or not, as by its sender.
func TestLooksLikeBounce(t *testing.T) {
	for _, c := range []struct {
		fields []rawField
		want   bool
	}{
		{[]rawField{{name: "Subject", value: "=?utf-8?q?Unzustellbar=3A_Ihre_Bestellung?="}}, true},
		{[]rawField{{name: "Subject", value: "=?iso-8859-1?q?=C9chec_de_la_remise?="}}, true},
		{[]rawField{{name: "Subject", value: "Undeliverable: Weekly report"}}, true},
		{[]rawField{{name: "From", value: "MAILER-DAEMON@mx.example (Mail Delivery System)"}}, true},
		{[]rawField{{name: "X-Failed-Recipients", value: "a@b"}}, true},
		{[]rawField{{name: "Subject", value: "Re: the undeliverable parcel"}, {name: "From", value: "bob@example.com"}}, false},
	} {
		if got := looksLikeBounce(c.fields); got != c.want {
			t.Errorf("%v: %v, want %v", c.fields, got, c.want)
		}
	}
}

// The copy marker is found where it stands even when text before it changes length under
// strings.ToLower (U+0130 grows from 2 to 3 bytes): the returned copy's Message-ID is still read.
func TestTextBounceCopyMarkerIndex(t *testing.T) {
	text := strings.Repeat("\u0130", 120) + "\n\n  gone@example.org\n    550 5.1.1 user unknown\n\n" +
		"------ This is a copy of the message, including all the headers. ------\n\n" +
		"Message-ID: <orig-1@example.com>\nSubject: x\n"
	fields := []rawField{{name: "X-Failed-Recipients", value: "gone@example.org"}}
	b := textBounce(fields, text)
	if b == nil || b.OriginalMessageID != "<orig-1@example.com>" || len(b.Recipients) != 1 ||
		b.Recipients[0].Status != "5.1.1" {
		t.Errorf("bounce %+v", b)
	}
}

// Sections asks for each section once, with the larger cap: a notice's text wanted for Text and
// for Reports is one section; the calendar part only when wanted. For ReplyText it asks for the
// text/plain body, or the text/html body of a message without one (reply_text of html-only mail
// comes from its quote markup), never both.
func TestSectionsOnce(t *testing.T) {
	for _, c := range []struct {
		file string
		w    Wanted
		want []Section
	}{
		{"bounce-exim.eml", Wanted{Text: true, Reports: true}, []Section{{"1", DefaultLimits().TextPartBytes()}}},
		{"invite-google.eml", Wanted{Text: true, Calendar: true}, []Section{{"1.1", DefaultLimits().TextPartBytes()}, {"1.3", CalendarBytes}}},
		{"invite-google.eml", Wanted{HTML: true}, []Section{{"1.2", DefaultLimits().TextPartBytes()}}},
		{"bounce-postfix.eml", Wanted{Text: true, Reports: true, Calendar: true},
			[]Section{{"1", DefaultLimits().TextPartBytes()}, {"2", ReportBytes}, {"3.HEADER", ReportBytes}}},
		{"alternative.eml", Wanted{ReplyText: true}, []Section{{"1", DefaultLimits().TextPartBytes()}}},
		{"cp1252-html.eml", Wanted{ReplyText: true}, []Section{{"1", DefaultLimits().TextPartBytes()}}},
		{"alternative.eml", Wanted{ReplyText: true, HTML: true}, []Section{{"1", DefaultLimits().TextPartBytes()}, {"2", DefaultLimits().TextPartBytes()}}},
		{"attachment-only.eml", Wanted{ReplyText: true}, nil},
	} {
		raw, err := os.ReadFile("testdata/" + c.file)
		if err != nil {
			t.Fatal(err)
		}
		header, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		if got := Sections(header, structureOf(t, raw), Limits{}, c.w); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s %+v: %v, want %v", c.file, c.w, got, c.want)
		}
	}
}

// What ReplyText's sections return is enough: the reply text of an html-only message comes from
// its markup.
func TestReplyTextOfHTMLOnly(t *testing.T) {
	raw, err := os.ReadFile("testdata/cp1252-html.eml")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(bytes.NewReader(raw), Limits{})
	if err != nil || m.Text != "" || ReplyText(m.Text, m.HTML) == "" {
		t.Errorf("html-only message: text %q, reply text %q, %v", m.Text, ReplyText(m.Text, m.HTML), err)
	}
}
