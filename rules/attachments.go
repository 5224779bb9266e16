package rules

import (
	"fmt"
	"strings"
	"sync"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"

	"github.com/mailhook/mailhook/message"
)

// AttachmentEnv is the environment of a webhook's `attachments_when` expression: one attachment,
// described by the same metadata the payload's attachments[] carries.
type AttachmentEnv struct {
	Filename    string `expr:"filename"`     // decoded file name; "" when the part has none
	ContentType string `expr:"content_type"` // media type, lower case, without parameters
	Size        int64  `expr:"size"`         // encoded octets, as BODYSTRUCTURE reports them
}

// AttachmentFilter is a compiled `attachments_when` expression: it chooses which attachments a
// webhook with `attachments: inline` ships with their content. It is safe for concurrent use.
//
// The zero filter (and a nil *AttachmentFilter) is the default choice, used when no
// `attachments_when` is configured: every attachment except a message/rfc822 (or message/global)
// part whose own parts are listed too — the forwarded message's attachments are shipped one by
// one instead, so its content is not shipped twice.
type AttachmentFilter struct {
	src     string
	program *vm.Program
	vms     sync.Pool // of *vm.VM
}

// CompileAttachmentFilter type-checks and compiles an `attachments_when` expression over
// AttachmentEnv; it must be boolean. An empty src gives the default filter (nil). Errors keep
// expr's message with its line:column and caret excerpt; the caller names the field.
func CompileAttachmentFilter(src string) (*AttachmentFilter, error) {
	if strings.TrimSpace(src) == "" {
		return nil, nil
	}
	p, err := expr.Compile(src, expr.Env(AttachmentEnv{}), expr.AsBool(), expr.MaxNodes(maxNodes))
	if err != nil {
		return nil, err
	}
	f := &AttachmentFilter{src: src, program: p}
	f.vms.New = func() any { return &vm.VM{MemoryBudget: memoryBudget} }
	return f, nil
}

// String returns the expression as configured ("" for the default filter).
func (f *AttachmentFilter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}

// Match reports whether the filter chooses a. A run-time error counts as not chosen and is
// returned for the caller to log.
func (f *AttachmentFilter) Match(a message.Attachment) (bool, error) {
	if f == nil || f.program == nil {
		return true, nil
	}
	m := f.vms.Get().(*vm.VM)
	defer f.vms.Put(m)
	out, err := m.Run(f.program, &AttachmentEnv{Filename: a.Filename, ContentType: a.ContentType, Size: a.Size})
	if err != nil {
		return false, fmt.Errorf("attachments_when: %w", err)
	}
	ok, _ := out.(bool)
	return ok, nil
}

// InlineChoice is what a webhook with `attachments: inline` ships of one message's attachments.
type InlineChoice struct {
	// Inline are the indexes (into the message's Attachments, ascending) of the attachments
	// shipped with their content.
	Inline []int
	// Over are the indexes of attachments the filter chose that did not fit under the cap:
	// they are shipped as metadata only, and the payload says it was truncated.
	Over []int
	// Errs are run-time errors of the filter (each attachment concerned counts as not chosen).
	Errs []error
}

// ChooseInline picks the attachments of atts that f chooses, in message order, while their sizes
// (encoded octets, the `size` of the payload) add up to at most maxBytes; a chosen attachment
// that does not fit goes to Over and the next ones are still considered, so one large file does
// not keep smaller ones out. A maxBytes ≤ 0 admits nothing. The result depends only on its
// arguments, so the watcher (deciding what to fetch) and the handler (building the payload)
// reach the same choice.
func ChooseInline(atts []message.Attachment, f *AttachmentFilter, maxBytes int64) InlineChoice {
	var c InlineChoice
	var used int64
	for i, a := range atts {
		if f == nil && isContainer(atts, i) {
			continue
		}
		ok, err := f.Match(a)
		if err != nil {
			c.Errs = append(c.Errs, fmt.Errorf("attachment %d (%q): %w", i, a.Filename, err))
		}
		if !ok {
			continue
		}
		if a.Size < 0 || a.Size > maxBytes-used {
			c.Over = append(c.Over, i)
			continue
		}
		used += a.Size
		c.Inline = append(c.Inline, i)
	}
	return c
}

// isContainer reports whether atts[i] is an encapsulated message whose parts are listed too.
func isContainer(atts []message.Attachment, i int) bool {
	a := atts[i]
	if a.ContentType != "message/rfc822" && a.ContentType != "message/global" {
		return false
	}
	prefix := a.Section + "."
	for _, b := range atts {
		if a.Section != "" && strings.HasPrefix(b.Section, prefix) {
			return true
		}
	}
	return false
}
