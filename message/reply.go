package message

import (
	"regexp"
	"strings"
)

// ReplyText returns what the sender wrote in this message: text without the quoted history and
// without the signature, as inbound-mail services call it the stripped reply. It cuts at the
// first line that starts the history —
//
//   - an attribution line, also when wrapped over two or three lines: "On … wrote:",
//     "Am … schrieb …:", "Le … a écrit :", "El … escribió:";
//   - a separator: "-----Original Message-----" and its German, French and Spanish forms,
//     Outlook's line of underscores;
//   - Outlook's header block: "From:" (Von:, De:) followed within four lines by "Sent:"
//     (Gesendet:, Envoyé :, Enviado:) or "Date:";
//   - a line quoted with ">";
//
// and before the signature: a "-- " line, or a common mobile footer ("Sent from my iPhone", "Von
// meinem iPhone gesendet", "Get Outlook for Android", …) after the text. When text is empty, html
// stands in, with Gmail's (div.gmail_quote), Apple Mail's and Thunderbird's (blockquote) and
// Outlook on the web's (div#divRplyFwdMsg, div#appendonsend) quote markup left out. When
// nothing is cut, the result is text itself.
func ReplyText(text, html string) string {
	if text == "" && html != "" {
		text = htmlReplyText(html)
	}
	lines := strings.SplitAfter(text, "\n")
	end := len(lines)
	for i := 0; i < len(lines); i++ {
		if startsHistory(lines, i) {
			end = i
			break
		}
	}
	for i := 0; i < end; i++ {
		if startsSignature(lines[i]) {
			end = i
			break
		}
	}
	if end == len(lines) {
		return text
	}
	return strings.TrimRight(strings.Join(lines[:end], ""), " \t\r\n")
}

// attribution matches an attribution line (joined with the next ones when wrapped).
var attribution = regexp.MustCompile(`(?i)^\s*(?:on\s.{3,300}\swrote|am\s.{3,300}\sschrieb.{0,200}|le\s.{3,300}\sa\s+écrit|el\s.{3,300}\sescribió)\s*:\s*$`)

// separators are whole lines that start a forwarded or quoted original.
var separators = []string{
	"-----original message-----", "----- original message -----", "-----ursprüngliche nachricht-----",
	"-----message d'origine-----", "-----mensaje original-----", "----- mensaje original -----",
}

// outlookFrom and outlookSent are the first and a later field of Outlook's header block.
var (
	outlookFrom = regexp.MustCompile(`(?i)^\s*\**(?:from|von|de)\s*:\**\s`)
	outlookSent = regexp.MustCompile(`(?i)^\s*\**(?:sent|gesendet|envoyé|enviado|date|datum|fecha)\s*:`)
)

// startsHistory reports whether lines[i] is the first line of the quoted history.
func startsHistory(lines []string, i int) bool {
	l := strings.TrimSpace(lines[i])
	if l == "" {
		return false
	}
	if l[0] == '>' {
		return true
	}
	lower := strings.ToLower(l)
	for _, s := range separators {
		if lower == s {
			return true
		}
	}
	if len(l) >= 20 && strings.Trim(l, "_") == "" { // Outlook's separator above its header block
		return i+1 < len(lines) && outlookFrom.MatchString(lines[i+1])
	}
	if outlookFrom.MatchString(l) {
		for j := i + 1; j < len(lines) && j <= i+4; j++ {
			if outlookSent.MatchString(lines[j]) {
				return true
			}
		}
		return false
	}
	first, _, _ := strings.Cut(lower, " ")
	if (first != "on" && first != "am" && first != "le" && first != "el") || len(l) > 600 {
		return false // every attribution starts so: a cheap test before the pattern
	}
	joined := l
	for j := i; j < len(lines) && j <= i+2; j++ {
		if j > i {
			joined += " " + strings.TrimSpace(lines[j])
		}
		if strings.HasSuffix(joined, ":") && attribution.MatchString(joined) {
			return true
		}
	}
	return false
}

// mobileFooters are signatures mail apps add, lower case, as whole lines.
var mobileFooters = []string{
	"sent from my iphone", "sent from my ipad", "sent from my android", "sent from my mobile",
	"sent from my samsung galaxy smartphone.", "sent from outlook", "sent from mail for windows",
	"sent from yahoo mail", "sent from gmail mobile", "get outlook for ios", "get outlook for android",
	"von meinem iphone gesendet", "von meinem ipad gesendet", "gesendet von meinem iphone",
	"envoyé de mon iphone", "envoyé de mon ipad", "enviado desde mi iphone", "enviado desde mi ipad",
}

// startsSignature reports whether line starts the signature.
func startsSignature(line string) bool {
	l := strings.TrimRight(line, "\r\n")
	if l == "-- " || l == "--" {
		return true
	}
	lower := strings.ToLower(strings.TrimSpace(l))
	if len(lower) < 10 || len(lower) > 60 {
		return false
	}
	for _, f := range mobileFooters {
		if strings.HasPrefix(lower, f) {
			return true
		}
	}
	return false
}
