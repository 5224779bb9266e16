package message

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkStrings fails when any string in v (a struct, pointer, slice or string) is not valid UTF-8
// or holds a NUL.
func checkStrings(t *testing.T, v any) {
	t.Helper()
	var walk func(x reflect.Value)
	walk = func(x reflect.Value) {
		switch x.Kind() {
		case reflect.String:
			if s := x.String(); !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("bad string %q", s)
			}
		case reflect.Pointer:
			if !x.IsNil() {
				walk(x.Elem())
			}
		case reflect.Slice:
			for i := range x.Len() {
				walk(x.Index(i))
			}
		case reflect.Struct:
			for i := range x.NumField() {
				walk(x.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(v))
}

func seedFiles(f *testing.F, names ...string) {
	for _, n := range names {
		if b, err := os.ReadFile("testdata/" + n); err == nil {
			f.Add(string(b))
		}
	}
}

// FuzzDSN: a delivery report and a plain-text notice never panic, keep at most
// MaxReportRecipients and give valid strings; a bounce always has a kind.
func FuzzDSN(f *testing.F) {
	f.Add("Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; a@b\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 x\n")
	f.Add("Original-Recipient: utf-8; j\\x{00FC}rgen@b\\x{0}\n Action: delayed\n")
	seedFiles(f, "bounce-exim.eml", "bounce-qmail.eml", "bounce-exchange-text.eml")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 2*ReportBytes {
			return
		}
		if b, valid := parseDSN(s); b != nil {
			if !valid || b.Kind == "" || len(b.Recipients) > MaxReportRecipients {
				t.Fatalf("bounce %+v valid %v", b, valid)
			}
			checkStrings(t, b)
		}
		fields := []rawField{{name: "X-Failed-Recipients", value: s[:min(len(s), 200)]}, {name: "Subject", value: "Undeliverable"}}
		if b := textBounce(fields, s); b != nil {
			if len(b.Recipients) == 0 || len(b.Recipients) > MaxReportRecipients || b.Kind == "" {
				t.Fatalf("text bounce %+v", b)
			}
			checkStrings(t, b)
		}
	})
}

// FuzzARF: a feedback report never panics and gives valid strings and a feedback type.
func FuzzARF(f *testing.F) {
	f.Add("Feedback-Type: abuse\nUser-Agent: x/1\nVersion: 1\nOriginal-Rcpt-To: <a@b>\nArrival-Date: Thu, 03 Dec 2026 08:10:01 +0000\n")
	f.Add("Feedback-Type:\n\tabuse\nReported-Domain: \xff\n")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 2*ReportBytes {
			return
		}
		c, valid := parseARF(s)
		if valid != (c != nil) || (c != nil && c.FeedbackType == "") {
			t.Fatalf("complaint %+v valid %v", c, valid)
		}
		if c != nil {
			checkStrings(t, c)
		}
	})
}

// FuzzCalendar: an iCalendar object never panics, stays bounded and gives valid strings; times
// are RFC 3339 UTC or dates.
func FuzzCalendar(f *testing.F) {
	f.Add("BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;TZID=W. Europe Standard Time:20260710T090000\nDURATION:PT1H\nEND:VEVENT\nEND:VCALENDAR\n")
	f.Add("BEGIN:VCALENDAR\nBEGIN:VTIMEZONE\nTZID:x\nBEGIN:STANDARD\nDTSTART:16010101T000000\nTZOFFSETTO:+0100\nRRULE:FREQ=YEARLY;BYMONTH=2;BYDAY=5MO\nEND:STANDARD\nEND:VTIMEZONE\nBEGIN:VEVENT\nDTSTART;TZID=x:20260210T000000\nEND:VEVENT\nEND:VCALENDAR\n")
	seedFiles(f, "bad-calendar.eml")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > CalendarBytes {
			return
		}
		c, valid := parseCalendar(s)
		if c == nil {
			return
		}
		if len(c.Attendees) > MaxCalendarAttendees {
			t.Fatalf("%d attendees", len(c.Attendees))
		}
		for _, ts := range []string{c.Start, c.End} {
			if ts != "" && len(ts) != len("2006-01-02") && !strings.HasSuffix(ts, "Z") {
				t.Fatalf("time %q is neither a date nor UTC", ts)
			}
		}
		if valid && c.Start == "" {
			t.Fatalf("valid event without start: %+v", c)
		}
		checkStrings(t, c)
	})
}
