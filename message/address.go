package message

import (
	"net/mail"
	"strings"
)

// maxAddressInput bounds the header value the address parser sees (the rest is dropped with a
// "bad_address" defect). RFC 5322 sets no limit, but 16 KiB holds some 400 recipients, and
// net/mail's cost per byte grows with the length of a phrase or quoted string (it allocates per
// word, and the collector's work grows with it): at 64 KiB a long display name cost 57× a 4 KB
// one, where address parsing must stay near-linear (a 100 KB phrase at most 25× a 4 KB one;
// TestAddressScalesLinearly, BenchmarkAddressLong).
const maxAddressInput = 16 << 10

// addresses parses an address-list header value (RFC 5322 §3.4) tolerantly: when the whole list
// does not parse, each comma-separated element is tried on its own, and an element that still
// fails is dropped with a "bad_address" defect.
//
// Display names are RFC 2047 decoded, but an addr-spec is never taken from decoded text: an
// address whose addr-spec contains an encoded-word ("=?utf-8?q?=40attacker.com?=@microsoft.com")
// is dropped as "bad_address", so an encoded "@" cannot smuggle in a different domain.
func (dec *decoder) addresses(raw string) []Address {
	raw = clean(raw)
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	if len(raw) > maxAddressInput {
		raw = raw[:maxAddressInput]
		dec.d.add("bad_address")
	}
	p := mail.AddressParser{WordDecoder: &dec.wd}
	list, err := p.ParseList(raw)
	if err != nil {
		list = list[:0]
		for _, item := range splitAddressList(raw) {
			if strings.TrimSpace(item) == "" {
				continue
			}
			a, err := p.Parse(item)
			if err != nil {
				a = angleAddress(&p, item)
			}
			if a == nil {
				dec.d.add("bad_address")
				continue
			}
			list = append(list, a)
		}
	}
	out := make([]Address, 0, len(list))
	for _, a := range list {
		if strings.Contains(a.Address, "=?") || !strings.Contains(a.Address, "@") {
			dec.d.add("bad_address")
			continue
		}
		out = append(out, Address{Name: clean(a.Name), Address: clean(a.Address)})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// angleAddress salvages "junk <local@domain>" forms that net/mail rejects: the part in angle
// brackets is parsed on its own and the text before it becomes the display name.
func angleAddress(p *mail.AddressParser, item string) *mail.Address {
	lt := strings.LastIndexByte(item, '<')
	gt := strings.LastIndexByte(item, '>')
	if lt < 0 || gt < lt {
		return nil
	}
	a, err := p.Parse(item[lt : gt+1])
	if err != nil {
		return nil
	}
	name := strings.TrimSpace(item[:lt])
	name = strings.Trim(name, "\"")
	if strings.ContainsAny(name, "<>") {
		return nil
	}
	if name != "" {
		if dn, err := p.WordDecoder.DecodeHeader(name); err == nil {
			name = dn
		}
	}
	a.Name = strings.TrimSpace(name)
	return a
}

// splitAddressList splits a list at commas outside quoted strings and comments. Commas inside
// angle brackets (the obsolete route syntax of RFC 5322 §4.4) are rare enough to be ignored:
// treating a stray "<" as opening a bracket would glue good addresses to broken ones.
func splitAddressList(s string) []string {
	var out []string
	depth := 0
	quoted := false
	last := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++
		case c == '"' && depth == 0:
			quoted = !quoted
		case quoted:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ',' && depth == 0:
			out = append(out, s[last:i])
			last = i + 1
		}
	}
	return append(out, s[last:])
}
