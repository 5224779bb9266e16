package message

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

// Calendar is the first event of a calendar invitation (RFC 5545 VEVENT, RFC 5546 iTIP): a
// text/calendar part or an .ics attachment.
type Calendar struct {
	// Method is the iTIP method in upper case: "REQUEST", "CANCEL", "REPLY", "PUBLISH", …; "" when
	// the calendar has none.
	Method   string `json:"method" expr:"method"`
	UID      string `json:"uid" expr:"uid"`
	Summary  string `json:"summary" expr:"summary"`
	Location string `json:"location" expr:"location"`
	// Start and End are RFC 3339 times in UTC for timed events ("2026-12-10T09:00:00Z"), with
	// their TZID resolved (IANA names, Windows names as Outlook writes them, and the calendar's
	// own VTIMEZONE definitions); dates for all-day events ("2026-12-24"), End exclusive as in
	// iCalendar. A time without a zone ("floating") is taken as UTC. End is computed from
	// DURATION when there is no DTEND, and is "" when neither is given.
	Start  string `json:"start" expr:"start"`
	End    string `json:"end" expr:"end"`
	AllDay bool   `json:"all_day" expr:"all_day"`
	// Organizer has the organizer's common name and address (mailto: removed).
	Organizer Address `json:"organizer" expr:"organizer"`
	// Attendees are at most MaxCalendarAttendees, in order.
	Attendees []CalendarAttendee `json:"attendees" expr:"attendees"`
	// Status is the event's STATUS in lower case: "confirmed", "tentative", "cancelled"; "" when
	// absent.
	Status string `json:"status" expr:"status"`
	// RRule is the recurrence rule as written ("FREQ=WEEKLY;BYDAY=MO"), "" for a single event.
	RRule string `json:"rrule" expr:"rrule"`
}

// CalendarAttendee is one ATTENDEE of an event.
type CalendarAttendee struct {
	Name    string `json:"name" expr:"name"`
	Address string `json:"address" expr:"address"`
	// Status is the participation status in lower case: "needs-action", "accepted",
	// "declined", "tentative", "delegated"; "" when absent.
	Status string `json:"status" expr:"status"`
	// Role is "req-participant", "opt-participant", "chair", …, lower case; "" when absent.
	Role string `json:"role" expr:"role"`
}

const (
	// CalendarBytes is how many raw octets of a calendar part are read.
	CalendarBytes = 256 << 10
	// MaxCalendarAttendees bounds Calendar.Attendees.
	MaxCalendarAttendees = 100
	// maxCalendarDepth bounds component nesting; real calendars nest three deep (VCALENDAR,
	// VEVENT, VALARM; VTIMEZONE, STANDARD).
	maxCalendarDepth = 8
)

// isCalendar reports whether a leaf is a calendar: text/calendar, application/ics, or a file
// named *.ics.
func isCalendar(n *node) bool {
	return n.mediaType == "text/calendar" || n.mediaType == "application/ics" ||
		strings.HasSuffix(strings.ToLower(n.filename), ".ics")
}

// parseCalendar reads the first VEVENT of an iCalendar object. It returns nil, false when the
// object does not parse; nil, true when it has no event; an event with the fields it could read
// and false when its start is unreadable.
func parseCalendar(text string) (c *Calendar, valid bool) {
	if calendarDepth(text) > maxCalendarDepth {
		return nil, false
	}
	cal, err := decodeCalendar(text)
	if err != nil {
		return nil, false
	}
	var ev *ical.Component
	for _, ch := range cal.Children {
		if ch.Name == ical.CompEvent {
			ev = ch
			break
		}
	}
	if ev == nil {
		return nil, true
	}
	c = &Calendar{
		Method:   strings.ToUpper(propText(cal.Component, ical.PropMethod)),
		UID:      propText(ev, ical.PropUID),
		Summary:  propText(ev, ical.PropSummary),
		Location: propText(ev, ical.PropLocation),
		Status:   strings.ToLower(propText(ev, ical.PropStatus)),
		RRule:    clean(propRaw(ev, ical.PropRecurrenceRule)),
	}
	if p := ev.Props.Get(ical.PropOrganizer); p != nil {
		c.Organizer = calendarAddress(p)
	}
	for _, p := range ev.Props.Values(ical.PropAttendee) {
		if len(c.Attendees) == MaxCalendarAttendees {
			break
		}
		a := calendarAddress(&p)
		c.Attendees = append(c.Attendees, CalendarAttendee{Name: a.Name, Address: a.Address,
			Status: strings.ToLower(clean(p.Params.Get(ical.ParamParticipationStatus))),
			Role:   strings.ToLower(clean(p.Params.Get(ical.ParamRole)))})
	}
	zones := timezones(cal)
	start, allDay, ok := eventTime(ev.Props.Get(ical.PropDateTimeStart), zones)
	if !ok {
		return c, false
	}
	c.AllDay = allDay
	c.Start = formatEventTime(start, allDay)
	if end, endAllDay, ok := eventTime(ev.Props.Get(ical.PropDateTimeEnd), zones); ok {
		c.End = formatEventTime(end, endAllDay)
	} else if p := ev.Props.Get(ical.PropDuration); p != nil {
		if dur, err := p.Duration(); err == nil {
			c.End = formatEventTime(start.Add(dur), allDay)
		}
	} else if allDay {
		c.End = formatEventTime(start.AddDate(0, 0, 1), true) // RFC 5545 §3.6.1: one day
	}
	return c, true
}

// decodeCalendar decodes an iCalendar object; a panic in the decoder is a malformed object.
func decodeCalendar(text string) (cal *ical.Calendar, err error) {
	defer func() {
		if r := recover(); r != nil {
			cal, err = nil, fmt.Errorf("ical: %v", r)
		}
	}()
	return ical.NewDecoder(strings.NewReader(text)).Decode()
}

// calendarDepth is the deepest BEGIN nesting of an iCalendar text, read without building it.
func calendarDepth(text string) int {
	depth, deepest := 0, 0
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(line, "BEGIN:"):
			depth++
			deepest = max(deepest, depth)
		case strings.HasPrefix(line, "END:"):
			depth--
		}
	}
	return deepest
}

// propText is a TEXT property's unescaped value, cleaned; "" when absent.
func propText(c *ical.Component, name string) string {
	p := c.Props.Get(name)
	if p == nil {
		return ""
	}
	s, err := p.Text()
	if err != nil {
		s = p.Value
	}
	return clean(strings.TrimSpace(s))
}

func propRaw(c *ical.Component, name string) string {
	if p := c.Props.Get(name); p != nil {
		return strings.TrimSpace(p.Value)
	}
	return ""
}

// calendarAddress reads an ORGANIZER or ATTENDEE: CN and the mailto: address.
func calendarAddress(p *ical.Prop) Address {
	addr := strings.TrimSpace(p.Value)
	if len(addr) >= 7 && strings.EqualFold(addr[:7], "mailto:") {
		addr = addr[7:]
	}
	return Address{Name: clean(strings.Trim(p.Params.Get(ical.ParamCommonName), `"`)), Address: clean(addr)}
}

// formatEventTime renders an event time: a date for all-day events, RFC 3339 UTC otherwise.
func formatEventTime(t time.Time, allDay bool) string {
	if allDay {
		return t.Format(time.DateOnly)
	}
	return t.UTC().Format(time.RFC3339)
}

// eventTime reads a DTSTART or DTEND: a date (allDay), a UTC time, or a local time in its TZID.
func eventTime(p *ical.Prop, zones map[string]*ical.Component) (t time.Time, allDay, ok bool) {
	if p == nil {
		return time.Time{}, false, false
	}
	v := strings.TrimSpace(p.Value)
	if p.ValueType() == ical.ValueDate || len(v) == len("20060102") {
		t, err := time.Parse("20060102", v)
		return t, true, err == nil
	}
	if strings.HasSuffix(v, "Z") {
		t, err := time.Parse("20060102T150405Z", v)
		return t, false, err == nil
	}
	wall, err := time.Parse("20060102T150405", v)
	if err != nil {
		return time.Time{}, false, false
	}
	tzid := strings.Trim(p.Params.Get(ical.PropTimezoneID), `"`)
	if tzid == "" {
		return wall, false, true // floating: taken as UTC
	}
	return resolveTZID(tzid, wall, zones), false, true
}

// resolveTZID turns a wall-clock time (held in UTC) in zone tzid into an instant: an IANA name,
// then the calendar's own VTIMEZONE of that TZID, then a Windows zone name. An unknown zone leaves
// the time as UTC.
func resolveTZID(tzid string, wall time.Time, zones map[string]*ical.Component) time.Time {
	in := func(loc *time.Location) time.Time {
		return time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, loc)
	}
	name := strings.TrimPrefix(tzid, "/") // "/Europe/Berlin" is an old globally unique form
	if loc, err := time.LoadLocation(name); err == nil && name != "" && name != "Local" {
		return in(loc)
	}
	if tz := zones[tzid]; tz != nil {
		if off, ok := vtimezoneOffset(tz, wall); ok {
			return wall.Add(-off)
		}
	}
	if iana, ok := windowsZones[tzid]; ok {
		if loc, err := time.LoadLocation(iana); err == nil {
			return in(loc)
		}
	}
	return wall
}

// timezones indexes a calendar's VTIMEZONE components by TZID.
func timezones(cal *ical.Calendar) map[string]*ical.Component {
	zones := map[string]*ical.Component{}
	for _, ch := range cal.Children {
		if ch.Name == ical.CompTimezone {
			if id := strings.Trim(propRaw(ch, ical.PropTimezoneID), `"`); id != "" {
				zones[id] = ch
			}
		}
	}
	return zones
}

// vtimezoneOffset finds the UTC offset in effect at a wall-clock time by a VTIMEZONE's STANDARD
// and DAYLIGHT observances: the one whose latest onset at or before the time is latest. Onsets
// come from DTSTART and a yearly RRULE by month and weekday (how real VTIMEZONEs are written);
// any other rule counts only its DTSTART.
func vtimezoneOffset(tz *ical.Component, wall time.Time) (time.Duration, bool) {
	var best time.Time
	var bestOff, earliestFrom time.Duration
	var earliest time.Time
	found := false
	for _, ob := range tz.Children {
		if ob.Name != ical.CompTimezoneStandard && ob.Name != ical.CompTimezoneDaylight {
			continue
		}
		start, err := time.Parse("20060102T150405", propRaw(ob, ical.PropDateTimeStart))
		if err != nil {
			continue
		}
		to, okTo := utcOffset(propRaw(ob, ical.PropTimezoneOffsetTo))
		from, okFrom := utcOffset(propRaw(ob, ical.PropTimezoneOffsetFrom))
		if !okTo {
			continue
		}
		if earliest.IsZero() || start.Before(earliest) {
			earliest, earliestFrom = start, to
			if okFrom {
				earliestFrom = from
			}
		}
		onset, ok := lastOnset(start, propRaw(ob, ical.PropRecurrenceRule), wall)
		if ok && (!found || onset.After(best)) {
			best, bestOff, found = onset, to, true
		}
	}
	if !found {
		if earliest.IsZero() {
			return 0, false
		}
		return earliestFrom, true
	}
	return bestOff, true
}

// lastOnset is the latest onset of an observance at or before wall.
func lastOnset(start time.Time, rule string, wall time.Time) (time.Time, bool) {
	if start.After(wall) {
		return time.Time{}, false
	}
	month, n, weekday, until, ok := yearlyRule(rule)
	if !ok {
		return start, true
	}
	for y := wall.Year(); y >= wall.Year()-1 && y >= start.Year(); y-- {
		d, ok := nthWeekday(y, month, n, weekday)
		if !ok {
			continue
		}
		onset := time.Date(y, month, d, start.Hour(), start.Minute(), start.Second(), 0, time.UTC)
		if onset.Before(start) || onset.After(wall) || (!until.IsZero() && onset.After(until)) {
			continue
		}
		return onset, true
	}
	return start, true
}

// yearlyRule reads "FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU" (UNTIL and INTERVAL=1 allowed).
func yearlyRule(rule string) (month time.Month, n int, weekday time.Weekday, until time.Time, ok bool) {
	if rule == "" {
		return 0, 0, 0, time.Time{}, false
	}
	freq := false
	for part := range strings.SplitSeq(strings.ToUpper(rule), ";") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "FREQ":
			freq = v == "YEARLY"
		case "BYMONTH":
			m, err := strconv.Atoi(v)
			if err != nil || m < 1 || m > 12 {
				return 0, 0, 0, time.Time{}, false
			}
			month = time.Month(m)
		case "BYDAY":
			if len(v) < 3 {
				return 0, 0, 0, time.Time{}, false
			}
			wd, known := icalWeekdays[v[len(v)-2:]]
			num, err := strconv.Atoi(strings.TrimPrefix(v[:len(v)-2], "+"))
			if !known || err != nil || num == 0 || num < -5 || num > 5 {
				return 0, 0, 0, time.Time{}, false
			}
			n, weekday = num, wd
		case "UNTIL":
			for _, layout := range []string{"20060102T150405Z", "20060102T150405", "20060102"} {
				if t, err := time.Parse(layout, v); err == nil {
					until = t
					break
				}
			}
		case "INTERVAL":
			if v != "1" {
				return 0, 0, 0, time.Time{}, false
			}
		case "WKST", "":
		default:
			return 0, 0, 0, time.Time{}, false
		}
	}
	return month, n, weekday, until, freq && month != 0 && n != 0
}

// icalWeekdays are RFC 5545's weekday names (BYDAY).
var icalWeekdays = map[string]time.Weekday{"SU": time.Sunday, "MO": time.Monday, "TU": time.Tuesday,
	"WE": time.Wednesday, "TH": time.Thursday, "FR": time.Friday, "SA": time.Saturday}

// nthWeekday is the day of month of the n-th (from the end when negative) weekday of a month.
func nthWeekday(year int, month time.Month, n int, wd time.Weekday) (int, bool) {
	last := time.Date(year, month+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if n > 0 {
		first := time.Date(year, month, 1, 0, 0, 0, 0, time.UTC).Weekday()
		d := 1 + (int(wd)-int(first)+7)%7 + 7*(n-1)
		return d, d <= last
	}
	lastWD := time.Date(year, month, last, 0, 0, 0, 0, time.UTC).Weekday()
	d := last - (int(lastWD)-int(wd)+7)%7 + 7*(n+1)
	return d, d >= 1
}

// utcOffset parses "+0100", "-0500", "+053000".
func utcOffset(s string) (time.Duration, bool) {
	if len(s) != 5 && len(s) != 7 {
		return 0, false
	}
	sign := time.Duration(1)
	switch s[0] {
	case '-':
		sign = -1
	case '+':
	default:
		return 0, false
	}
	var parts [3]int
	for i := 0; 1+2*i+2 <= len(s); i++ {
		v, err := strconv.Atoi(s[1+2*i : 3+2*i])
		if err != nil {
			return 0, false
		}
		parts[i] = v
	}
	if parts[0] > 23 || parts[1] > 59 || parts[2] > 59 {
		return 0, false
	}
	return sign * (time.Duration(parts[0])*time.Hour + time.Duration(parts[1])*time.Minute +
		time.Duration(parts[2])*time.Second), true
}

// windowsZones maps the Windows time zone names Outlook and Exchange write as TZID to IANA
// names (Unicode CLDR windowsZones, territory 001).
var windowsZones = map[string]string{
	"Dateline Standard Time":          "Etc/GMT+12",
	"UTC-11":                          "Etc/GMT+11",
	"Hawaiian Standard Time":          "Pacific/Honolulu",
	"Alaskan Standard Time":           "America/Anchorage",
	"Pacific Standard Time (Mexico)":  "America/Tijuana",
	"Pacific Standard Time":           "America/Los_Angeles",
	"US Mountain Standard Time":       "America/Phoenix",
	"Mountain Standard Time (Mexico)": "America/Mazatlan",
	"Mountain Standard Time":          "America/Denver",
	"Central America Standard Time":   "America/Guatemala",
	"Central Standard Time":           "America/Chicago",
	"Central Standard Time (Mexico)":  "America/Mexico_City",
	"Canada Central Standard Time":    "America/Regina",
	"SA Pacific Standard Time":        "America/Bogota",
	"Eastern Standard Time (Mexico)":  "America/Cancun",
	"Eastern Standard Time":           "America/New_York",
	"US Eastern Standard Time":        "America/Indiana/Indianapolis",
	"Venezuela Standard Time":         "America/Caracas",
	"Paraguay Standard Time":          "America/Asuncion",
	"Atlantic Standard Time":          "America/Halifax",
	"Central Brazilian Standard Time": "America/Cuiaba",
	"SA Western Standard Time":        "America/La_Paz",
	"Pacific SA Standard Time":        "America/Santiago",
	"Newfoundland Standard Time":      "America/St_Johns",
	"E. South America Standard Time":  "America/Sao_Paulo",
	"Argentina Standard Time":         "America/Argentina/Buenos_Aires",
	"SA Eastern Standard Time":        "America/Cayenne",
	"Greenland Standard Time":         "America/Nuuk",
	"Montevideo Standard Time":        "America/Montevideo",
	"UTC-02":                          "Etc/GMT+2",
	"Azores Standard Time":            "Atlantic/Azores",
	"Cape Verde Standard Time":        "Atlantic/Cape_Verde",
	"UTC":                             "Etc/UTC",
	"GMT Standard Time":               "Europe/London",
	"Greenwich Standard Time":         "Atlantic/Reykjavik",
	"Morocco Standard Time":           "Africa/Casablanca",
	"W. Europe Standard Time":         "Europe/Berlin",
	"Central Europe Standard Time":    "Europe/Budapest",
	"Romance Standard Time":           "Europe/Paris",
	"Central European Standard Time":  "Europe/Warsaw",
	"W. Central Africa Standard Time": "Africa/Lagos",
	"Namibia Standard Time":           "Africa/Windhoek",
	"Jordan Standard Time":            "Asia/Amman",
	"GTB Standard Time":               "Europe/Bucharest",
	"Middle East Standard Time":       "Asia/Beirut",
	"Egypt Standard Time":             "Africa/Cairo",
	"E. Europe Standard Time":         "Europe/Chisinau",
	"Syria Standard Time":             "Asia/Damascus",
	"South Africa Standard Time":      "Africa/Johannesburg",
	"FLE Standard Time":               "Europe/Kiev",
	"Israel Standard Time":            "Asia/Jerusalem",
	"Kaliningrad Standard Time":       "Europe/Kaliningrad",
	"Arabic Standard Time":            "Asia/Baghdad",
	"Turkey Standard Time":            "Europe/Istanbul",
	"Arab Standard Time":              "Asia/Riyadh",
	"Belarus Standard Time":           "Europe/Minsk",
	"Russian Standard Time":           "Europe/Moscow",
	"E. Africa Standard Time":         "Africa/Nairobi",
	"Iran Standard Time":              "Asia/Tehran",
	"Arabian Standard Time":           "Asia/Dubai",
	"Azerbaijan Standard Time":        "Asia/Baku",
	"Georgian Standard Time":          "Asia/Tbilisi",
	"Caucasus Standard Time":          "Asia/Yerevan",
	"Mauritius Standard Time":         "Indian/Mauritius",
	"Afghanistan Standard Time":       "Asia/Kabul",
	"West Asia Standard Time":         "Asia/Tashkent",
	"Ekaterinburg Standard Time":      "Asia/Yekaterinburg",
	"Pakistan Standard Time":          "Asia/Karachi",
	"India Standard Time":             "Asia/Kolkata",
	"Sri Lanka Standard Time":         "Asia/Colombo",
	"Nepal Standard Time":             "Asia/Kathmandu",
	"Central Asia Standard Time":      "Asia/Almaty",
	"Bangladesh Standard Time":        "Asia/Dhaka",
	"Myanmar Standard Time":           "Asia/Yangon",
	"SE Asia Standard Time":           "Asia/Bangkok",
	"North Asia Standard Time":        "Asia/Krasnoyarsk",
	"China Standard Time":             "Asia/Shanghai",
	"North Asia East Standard Time":   "Asia/Irkutsk",
	"Singapore Standard Time":         "Asia/Singapore",
	"W. Australia Standard Time":      "Australia/Perth",
	"Taipei Standard Time":            "Asia/Taipei",
	"Ulaanbaatar Standard Time":       "Asia/Ulaanbaatar",
	"Tokyo Standard Time":             "Asia/Tokyo",
	"Korea Standard Time":             "Asia/Seoul",
	"Yakutsk Standard Time":           "Asia/Yakutsk",
	"Cen. Australia Standard Time":    "Australia/Adelaide",
	"AUS Central Standard Time":       "Australia/Darwin",
	"E. Australia Standard Time":      "Australia/Brisbane",
	"AUS Eastern Standard Time":       "Australia/Sydney",
	"West Pacific Standard Time":      "Pacific/Port_Moresby",
	"Tasmania Standard Time":          "Australia/Hobart",
	"Vladivostok Standard Time":       "Asia/Vladivostok",
	"Central Pacific Standard Time":   "Pacific/Guadalcanal",
	"New Zealand Standard Time":       "Pacific/Auckland",
	"UTC+12":                          "Etc/GMT-12",
	"Fiji Standard Time":              "Pacific/Fiji",
	"Tonga Standard Time":             "Pacific/Tongatapu",
	"Samoa Standard Time":             "Pacific/Apia",
}
