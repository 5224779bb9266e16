package message

import (
	"mime"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// parseMediaHeader parses a Content-Type or Content-Disposition value: the lower-cased value and
// its parameters (lower-case names, RFC 2231 continuations and charsets decoded, RFC 2047 not yet
// decoded). It never fails: when mime.ParseMediaType rejects the parameters (duplicates, stray
// characters, unquoted spaces), they are parsed leniently, the first occurrence winning. ok is
// false when the value itself is malformed.
func parseMediaHeader(v string) (value string, params map[string]string, ok bool) {
	v = strings.TrimSpace(stripComments(v))
	if v == "" {
		return "", nil, true
	}
	mt, ps, err := mime.ParseMediaType(v)
	if err == nil {
		return strings.ToLower(mt), ps, true
	}
	head, rest, _ := strings.Cut(v, ";")
	head = strings.ToLower(strings.TrimSpace(head))
	if head == "" || strings.ContainsAny(head, " \t\"") {
		return "", lenientParams(rest), false
	}
	return head, lenientParams(rest), true
}

// lenientParams parses "; a=b; c="d e"" without failing; RFC 2231 forms are then merged.
func lenientParams(s string) map[string]string {
	raw := make(map[string]string)
	for len(s) > 0 {
		var item string
		item, s = cutParam(s)
		k, v, found := strings.Cut(item, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !found || k == "" {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = unquote(v[1 : len(v)-1])
		}
		if _, dup := raw[k]; !dup {
			raw[k] = v
		}
	}
	return mergeRFC2231(raw)
}

// cutParam returns the text up to the next ';' outside a quoted string, and the rest.
func cutParam(s string) (item, rest string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case ';':
			if !quoted {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

func unquote(s string) string {
	if !strings.ContainsRune(s, '\\') {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mergeRFC2231 turns RFC 2231 parameters (name*=charset'lang'%xx, name*0=…, name*1*=…) into plain
// ones, decoding charsets it knows; plain parameters pass through. A server may hand these to us
// undecoded in BODYSTRUCTURE, and a lenient parse leaves them as they were written.
func mergeRFC2231(raw map[string]string) map[string]string {
	type piece struct {
		n       int
		encoded bool
		v       string
	}
	var pieces map[string][]piece
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		star := strings.IndexByte(k, '*')
		if star < 0 {
			out[k] = v
			continue
		}
		name, suffix := k[:star], k[star+1:]
		p := piece{v: v}
		switch {
		case suffix == "":
			p.encoded = true
		default:
			num, enc := strings.CutSuffix(suffix, "*")
			n, err := strconv.Atoi(num)
			if err != nil || n < 0 || n > 1000 {
				continue
			}
			p.n, p.encoded = n, enc
		}
		if pieces == nil {
			pieces = make(map[string][]piece)
		}
		pieces[name] = append(pieces[name], p)
	}
	for name, ps := range pieces {
		sort.Slice(ps, func(i, j int) bool { return ps[i].n < ps[j].n })
		var b strings.Builder
		cs := ""
		for i, p := range ps {
			v := p.v
			if p.encoded {
				if i == 0 {
					// charset'language'value
					if parts := strings.SplitN(v, "'", 3); len(parts) == 3 {
						cs, v = strings.ToLower(parts[0]), parts[2]
					}
				}
				if u, err := url.PathUnescape(v); err == nil {
					v = u
				}
			}
			b.WriteString(v)
		}
		v := b.String()
		if cs != "" && cs != "utf-8" && cs != "us-ascii" {
			v = convertCharset(cs, v)
		}
		out[name] = v
	}
	return out
}

// normParams lower-cases parameter names, merges RFC 2231 forms and decodes RFC 2047
// encoded-words in values (common, though not allowed, in filename and name parameters).
func (dec *decoder) normParams(in map[string]string) map[string]string {
	if len(in) == 0 {
		return nil
	}
	raw := make(map[string]string, len(in))
	for k, v := range in {
		raw[strings.ToLower(k)] = v
	}
	out := mergeRFC2231(raw)
	for k, v := range out {
		out[k] = dec.text(v)
	}
	return out
}

// splitMediaType splits a lower-cased "type/subtype", defaulting to text/plain (RFC 2045 §5.2) for
// an absent or malformed value.
func splitMediaType(mt string) (typ, sub string, ok bool) {
	typ, sub, found := strings.Cut(mt, "/")
	typ, sub = strings.TrimSpace(typ), strings.TrimSpace(sub)
	if !found || typ == "" || sub == "" {
		return "text", "plain", mt == ""
	}
	return typ, sub, true
}

// normEncoding normalises a Content-Transfer-Encoding value: lower case, comments and
// parameters dropped, "7bit" when absent (RFC 2045 §6.1).
func normEncoding(v string) string {
	v = strings.ToLower(strings.TrimSpace(stripComments(v)))
	if i := strings.IndexAny(v, "; \t"); i >= 0 {
		v = v[:i]
	}
	if v == "" {
		return "7bit"
	}
	return v
}

// knownEncoding reports whether enc (normalised) is one RFC 2045 defines.
func knownEncoding(enc string) bool {
	switch enc {
	case "7bit", "8bit", "binary", "base64", "quoted-printable":
		return true
	}
	return false
}
