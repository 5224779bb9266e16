package rules

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/message"
)

// forwarded is a message with a logo, an invoice, and a forwarded message (section 4) holding a
// text part and a PDF of its own.
var forwarded = []message.Attachment{
	{Filename: "logo.png", ContentType: "image/png", Size: 20_000, Section: "2"},
	{Filename: "invoice.pdf", ContentType: "application/pdf", Size: 300_000, Section: "3"},
	{Filename: "", ContentType: "message/rfc822", Size: 900_000, Section: "4"},
	{Filename: "", ContentType: "text/plain", Size: 2_000, Section: "4.1"},
	{Filename: "contract.PDF", ContentType: "application/pdf", Size: 800_000, Section: "4.2"},
}

func TestChooseInline(t *testing.T) {
	for _, tc := range []struct {
		name       string
		when       string
		max        int64
		inline     []int
		over       []int
		wantErrors int
	}{
		{"default: every leaf, not the container whose parts are listed", "", 10_000_000, []int{0, 1, 3, 4}, nil, 0},
		{"PDFs only, nested one included", `content_type == "application/pdf"`, 10_000_000, []int{1, 4}, nil, 0},
		{"by file name", `lower(filename) endsWith ".pdf"`, 10_000_000, []int{1, 4}, nil, 0},
		{"the container when asked for", `content_type == "message/rfc822"`, 10_000_000, []int{2}, nil, 0},
		{"cap: the large one is cut, later small ones still fit", `size > 1000`, 400_000, []int{0, 1, 3}, []int{2, 4}, 0},
		{"cap exactly reached", `content_type == "application/pdf"`, 1_100_000, []int{1, 4}, nil, 0},
		{"cap one short", `content_type == "application/pdf"`, 1_099_999, []int{1}, []int{4}, 0},
		{"zero cap admits nothing", "", 0, nil, []int{0, 1, 3, 4}, 0},
		{"run-time error counts as not chosen", `filename == "" || int(filename) > 0`, 10_000_000, []int{2, 3}, nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := CompileAttachmentFilter(tc.when)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			c := ChooseInline(forwarded, f, tc.max)
			if !slices.Equal(c.Inline, tc.inline) || !slices.Equal(c.Over, tc.over) {
				t.Errorf("inline %v over %v, want %v and %v", c.Inline, c.Over, tc.inline, tc.over)
			}
			if len(c.Errs) != tc.wantErrors {
				t.Errorf("errors %v, want %d", c.Errs, tc.wantErrors)
			}
		})
	}
}

func TestCompileAttachmentFilterErrors(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []string
	}{
		{`nmae == "x"`, []string{"unknown name nmae", "(1:1)", "| nmae", "^"}},
		{`size`, []string{"bool"}},
		{`subject contains "x"`, []string{"unknown name subject"}},
		{`size > "big"`, []string{"invalid operation"}},
	} {
		_, err := CompileAttachmentFilter(tc.src)
		if err == nil {
			t.Errorf("%q compiled", tc.src)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%q: error %q lacks %q", tc.src, err, w)
			}
		}
	}
	if f, err := CompileAttachmentFilter("  "); f != nil || err != nil {
		t.Errorf("blank expression: %v, %v; want the default filter", f, err)
	}
}
