package testmail

import "github.com/mailhook/mailhook/internal/demo"

// The sample messages are the demo's (see demo.Sample); tests name them through this package.
type (
	// SampleKind selects one of the sample messages.
	SampleKind = demo.SampleKind
	// SampleOptions varies a sample message.
	SampleOptions = demo.SampleOptions
)

// The sample kinds: a GitHub Actions failure notification, a vendor invoice with a PDF, and a
// personal note that no CI or invoice rule should match.
const (
	CIFailure      = demo.CIFailure
	Invoice        = demo.Invoice
	Personal       = demo.Personal
	NumSampleKinds = demo.NumSampleKinds
)

// Sample returns demo.Sample(i, opts): sample message i as RFC 5322 text with CRLF line endings.
func Sample(i int, opts SampleOptions) []byte { return demo.Sample(i, opts) }

// SampleCIFailure returns Sample(i, SampleOptions{Kind: CIFailure}).
func SampleCIFailure(i int) []byte { return Sample(i, SampleOptions{Kind: CIFailure}) }

// SampleInvoice returns Sample(i, SampleOptions{Kind: Invoice}).
func SampleInvoice(i int) []byte { return Sample(i, SampleOptions{Kind: Invoice}) }

// SamplePersonal returns Sample(i, SampleOptions{Kind: Personal}).
func SamplePersonal(i int) []byte { return Sample(i, SampleOptions{Kind: Personal}) }
