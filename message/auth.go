package message

import "strings"

// Auth returns the SPF, DKIM and DMARC verdicts of the first Authentication-Results field
// (RFC 8601) whose authserv-id equals authservID (case-insensitive). Fields from any other
// authserv-id are ignored, and so are later fields with the trusted one: the receiving server
// adds its field on top, and a sender can forge only fields below it. An empty authservID
// trusts nothing.
//
// Each verdict is the result keyword, lower case ("pass", "fail", "softfail", "neutral", "none",
// "temperror", "permerror", …). For DKIM, which reports one result per signature, the verdict is
// "pass" when any signature passed, else the first result; for SPF and DMARC it is the first.
func (m *Message) Auth(authservID string) Auth {
	authservID = strings.TrimSpace(authservID)
	if authservID == "" {
		return Auth{}
	}
	for _, v := range m.HeaderValues("Authentication-Results") {
		id, results, ok := parseAuthResults(v)
		if !ok || !strings.EqualFold(id, authservID) {
			continue
		}
		var a Auth
		for _, r := range results {
			switch r.method {
			case "spf":
				if a.SPF == "" {
					a.SPF = r.result
				}
			case "dkim":
				if a.DKIM == "" || r.result == "pass" {
					a.DKIM = r.result
				}
			case "dmarc":
				if a.DMARC == "" {
					a.DMARC = r.result
				}
			}
		}
		return a
	}
	return Auth{}
}

type authResult struct{ method, result string }

// parseAuthResults parses an Authentication-Results value (RFC 8601 §2.2):
//
//	authserv-id [version] ; method[/version]=result [reason] [props] ; …   or   authserv-id ; none
func parseAuthResults(v string) (id string, results []authResult, ok bool) {
	items := splitUnquoted(stripComments(v), ';')
	head := strings.Fields(items[0])
	if len(head) == 0 {
		return "", nil, false
	}
	id = strings.Trim(head[0], "\"")
	for _, item := range items[1:] {
		method, rest, found := strings.Cut(item, "=")
		if !found {
			continue // "none", or junk
		}
		method, _, _ = strings.Cut(method, "/")
		method = strings.ToLower(strings.TrimSpace(method))
		fields := strings.Fields(rest)
		if method == "" || len(fields) == 0 {
			continue
		}
		results = append(results, authResult{method: method, result: clean(strings.ToLower(fields[0]))})
	}
	return id, results, true
}

// splitUnquoted splits s at sep outside quoted strings.
func splitUnquoted(s string, sep byte) []string {
	var out []string
	quoted := false
	last := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if quoted {
				i++
			}
		case '"':
			quoted = !quoted
		case sep:
			if !quoted {
				out = append(out, s[last:i])
				last = i + 1
			}
		}
	}
	return append(out, s[last:])
}
