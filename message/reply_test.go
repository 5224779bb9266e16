package message

import (
	"slices"
	"strings"
	"testing"
)

// Replies as the common clients write them, in English, German, French and Spanish.
var replyCases = []struct {
	name, text, html, want string
}{
	{name: "gmail en", text: "Thanks, merged it.\n\nBob\n\nOn Tue, Dec 1, 2026 at 10:14 AM Alice Example <alice@example.com> wrote:\n\n> Could you merge the PR?\n>\n> Alice\n",
		want: "Thanks, merged it.\n\nBob"},
	{name: "gmail en, attribution wrapped", text: "Will do.\r\n\r\nOn Tue, Dec 1, 2026 at 10:14 AM Alice Example with a long name <\r\nalice.example@subdomain.example.com> wrote:\r\n\r\n> Can you?\r\n",
		want: "Will do."},
	{name: "gmail fr", text: "Merci !\n\nLe mar. 1 déc. 2026 à 10:14, Alice Example <alice@example.com> a écrit :\n\n> Bonjour,\n> ça marche ?\n",
		want: "Merci !"},
	{name: "gmail es", text: "Perfecto, gracias.\n\nEl mar, 1 dic 2026 a las 10:14, Alice Example (<alice@example.com>) escribió:\n\n> Hola\n",
		want: "Perfecto, gracias."},
	{name: "thunderbird de", text: "Passt, bis Donnerstag.\n\nAm 01.12.26 um 10:14 schrieb Alice Example:\n> Termin am Donnerstag?\n",
		want: "Passt, bis Donnerstag."},
	{name: "thunderbird signature", text: "See the attached plan.\n\n-- \nCarol Example\nACME Corp, Operations\n",
		want: "See the attached plan."},
	{name: "outlook desktop en", text: "Approved.\r\n\r\nRegards,\r\nCarol\r\n\r\n________________________________\r\nFrom: Alice Example <alice@example.com>\r\nSent: Tuesday, December 1, 2026 10:14 AM\r\nTo: Carol Example <carol@example.com>\r\nSubject: Budget 2027\r\n\r\nPlease approve the budget.\r\n",
		want: "Approved.\r\n\r\nRegards,\r\nCarol"},
	{name: "outlook original message", text: "Yes, Thursday works.\n\n-----Original Message-----\nFrom: Alice Example [mailto:alice@example.com]\nSent: Tuesday, December 1, 2026 10:14 AM\nSubject: Meeting\n\nThursday?\n",
		want: "Yes, Thursday works."},
	{name: "outlook de", text: "Erledigt.\n\nViele Grüße\nCarola\n\nVon: Alice Example <alice@example.com>\nGesendet: Dienstag, 1. Dezember 2026 10:14\nAn: Carola <carola@example.com>\nBetreff: Rechnung\n\nBitte prüfen.\n",
		want: "Erledigt.\n\nViele Grüße\nCarola"},
	{name: "outlook fr", text: "C'est fait.\n\nDe : Alice Example <alice@example.com>\nEnvoyé : mardi 1 décembre 2026 10:14\nÀ : Carole\nObjet : Facture\n",
		want: "C'est fait."},
	{name: "outlook es", text: "Hecho.\n\n-----Mensaje original-----\nDe: Alice Example\nEnviado el: martes, 1 de diciembre de 2026 10:14\n",
		want: "Hecho."},
	{name: "apple mail iphone en", text: "Sounds good.\n\nSent from my iPhone\n\n> On 1 Dec 2026, at 10:14, Alice Example <alice@example.com> wrote:\n> \n> Lunch at noon?\n",
		want: "Sounds good."},
	{name: "iphone de", text: "Ja, komme.\n\nVon meinem iPhone gesendet\n\n> Am 01.12.2026 um 10:14 schrieb Alice Example <alice@example.com>:\n>\n> Kommst du?\n",
		want: "Ja, komme."},
	{name: "outlook mobile", text: "On my way.\n\nGet Outlook for Android<https://aka.ms/AAb9ysg>\n________________________________\nFrom: Alice Example <alice@example.com>\nSent: Tuesday, December 1, 2026 10:14:00 AM\n",
		want: "On my way."},
	{name: "nothing quoted", text: "A new message, nothing quoted.\nSecond line.\n", want: "A new message, nothing quoted.\nSecond line.\n"},
	{name: "from line in the body is kept", text: "From: the docs team\nWe shipped it.\n", want: "From: the docs team\nWe shipped it.\n"},
	{name: "gmail html only", html: `<div dir="ltr">Thanks!<div>See you <b>then</b>.</div></div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Tue, Dec 1, 2026 at 10:14 AM Alice &lt;alice@example.com&gt; wrote:<br></div><blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">Question?<br></blockquote></div>`,
		want: "Thanks!\nSee you then."},
	{name: "apple mail html only", html: `<html><head><style>p{}</style></head><body><div>Yes &amp; thanks.</div><div><br><blockquote type="cite"><div>On 1 Dec 2026, at 10:14, Alice wrote:</div><div>Lunch?</div></blockquote></div></body></html>`,
		want: "Yes & thanks."},
	{name: "outlook web html only", html: `<div>Done.</div><div id="appendonsend"></div><hr><div id="divRplyFwdMsg"><b>From:</b> Alice<br><b>Sent:</b> Tuesday</div><div>Original text</div>`,
		want: "Done."},
}

func TestReplyText(t *testing.T) {
	for _, tc := range replyCases {
		if got := ReplyText(tc.text, tc.html); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestURLs(t *testing.T) {
	text := "See https://ci.example.com/run/42. Also (https://en.wikipedia.org/wiki/Go_(programming_language)) and\n" +
		"<https://example.com/a?b=1&c=2>, HTTP://EXAMPLE.ORG/X! again https://ci.example.com/run/42 and http:// alone, ftp://no.example"
	html := `<p><a href="https://example.com/a?b=1&amp;c=2">dup</a> <a href=" https://shop.example/item ">x</a>` +
		`<a href="mailto:a@example.com">m</a><area href="http://map.example/">` + `<a href="javascript:alert(1)">j</a>`
	want := []string{"https://ci.example.com/run/42", "https://en.wikipedia.org/wiki/Go_(programming_language)",
		"https://example.com/a?b=1&c=2", "HTTP://EXAMPLE.ORG/X", "https://shop.example/item", "http://map.example/"}
	if got := URLs(text, html); !slices.Equal(got, want) {
		t.Errorf("URLs\n got %q\nwant %q", got, want)
	}
	if got := URLs("", ""); got == nil || len(got) != 0 {
		t.Errorf("no URLs: %#v, want an empty list", got)
	}
	var many strings.Builder
	for i := range 300 {
		many.WriteString("https://example.com/" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + strings.Repeat("y", i) + " ")
	}
	if got := URLs(many.String(), ""); len(got) != 100 {
		t.Errorf("%d URLs, want at most 100", len(got))
	}
	if got := URLs("https://example.com/"+strings.Repeat("a", 5000)+" https://ok.example", ""); !slices.Equal(got, []string{"https://ok.example"}) {
		t.Errorf("an overlong URL: %q", got)
	}
}
