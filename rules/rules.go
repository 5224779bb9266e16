// Package rules compiles the user's rules (expr-lang expressions over a parsed message) once at
// startup, matches them against messages in file order, and reports which message fields the rules
// read, so the watcher fetches only the bytes they need.
//
// A rule's `when` is evaluated against an Env (see its fields for the names expressions use) and
// must be boolean. Besides expr's operators and builtins (`contains`, `startsWith`, `matches`,
// `any`, `filter`, `len`, …) expressions may call domain(addr), re(pattern, s), and find,
// find_all and groups (find.go); a rule's extract expressions (extract.go) compute the payload's
// fields once the rule matched. A `matches`
// whose pattern is computed at run time is rewritten to re(), whose compiled patterns are cached
// per Set. The field `date` shadows expr's date() builtin: compare with methods (`date.Year()`),
// now() and duration() instead.
//
// Evaluation is bounded deterministically, since expr cannot be interrupted on a timer and a
// timer would make `mailhook test` and the daemon disagree under load: an expression has at most
// 10,000 nodes, an evaluation a memory budget of 1,000,000 expr units, and the message package
// caps text and html before they get here. A pattern built at run time (from mail, which an
// attacker writes) has at most 4,096 bytes and 8,192 program instructions, one use of it costs at
// most 2^24 units of instructions × input bytes, and the cache of compiled patterns is bounded in
// count and bytes (recache.go). A rule that exceeds a bound or fails at run time does not match;
// Match returns its *RuleError, whose Defect the caller records on the message.
package rules

// Spec is one rule as configured.
type Spec struct {
	Name    string
	Account string // optional filter: only this account
	Mailbox string // optional filter: only this mailbox
	When    string // expression; must be boolean
	Actions []Action
	Stop    bool
	// Extract maps a field name to an expression evaluated when the rule matches; the results
	// go into the webhook payload's `fields` and the templates' .Fields (see Set.Extract).
	Extract map[string]string
}

// Action is one action of a rule; exactly one field is set.
type Action struct {
	Webhook  string   // name of a webhooks[] entry
	Reply    string   // name of a replies[] entry
	MarkSeen bool     // post-action: add \Seen
	Flag     []string // post-action: add these flags
	Move     string   // post-action: move to folder
	Copy     string   // post-action: copy to folder
}

// Reads says which costly message fields something reads.
type Reads struct {
	Text bool // the text/plain body
	HTML bool // the text/html body
	// ReplyText: the rule reads `reply_text`, so the watcher fetches the text/plain body, or the
	// text/html body of a message without one (message.Wanted.ReplyText).
	ReplyText   bool
	Attachments bool // attachment content (metadata is free: it comes with BODYSTRUCTURE)
	// AttachmentList: the rule reads `attachments` (filename, content_type, size), which costs no
	// extra bytes: the metadata comes with BODYSTRUCTURE. Reported by `mailhook check`.
	AttachmentList bool
	// Reports: the rule reads `bounce` or `complaint`, so the watcher fetches a message's small
	// report part and the returned message's header (message.Wanted.Reports).
	Reports bool
	// Calendar: the rule reads `calendar`, so the watcher fetches the calendar part
	// (message.Wanted.Calendar).
	Calendar bool
}

// union returns what r or o read.
func (r Reads) union(o Reads) Reads {
	return Reads{Text: r.Text || o.Text, HTML: r.HTML || o.HTML, ReplyText: r.ReplyText || o.ReplyText,
		Attachments:    r.Attachments || o.Attachments,
		AttachmentList: r.AttachmentList || o.AttachmentList, Reports: r.Reports || o.Reports,
		Calendar: r.Calendar || o.Calendar}
}

// The rest of the package: Compile, Set and Rule in compile.go; Set.Match and Set.Reads in
// match.go; Set.Explain (per-rule match and the false top-level clause, for `mailhook test`) in
// explain.go; Env and NewEnv in env.go; the re() pattern cache in recache.go.
