// Package pipeline turns one fetched message into outbox jobs: it is the watcher's Handler.
//
// For each message it matches the rules once (package rules) and, from that one match, decides
// two things: which attachments' content the jobs ship inline (the fetch plan the watcher follows
// before asking for the jobs), and the jobs themselves — one per webhook action, its body rendered
// once in the webhook's format (package payload), so a retry after a restart sends the very same
// bytes under the same webhook-id; one per reply action whose loop guards pass (package reply);
// one per post-action (mark_seen, flag, move, copy), depending on the same rule's webhook and
// reply jobs. A reply mailhook sent itself matches nothing at all.
//
// A Pipeline is built once from an immutable Config and is safe for concurrent use by the
// watchers of every mailbox. It never opens a store or a connection: the few questions it asks
// (is this one of our replies, was this sender answered, is this endpoint disabled) go through the
// narrow interfaces it declares, which the caller may leave nil.
package pipeline

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/reply"
	"github.com/mailhook/mailhook/rules"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/watcher"
)

// Config is everything a Pipeline needs, compiled. It is read by New and never changed after.
type Config struct {
	Rules    *rules.Set
	Webhooks []Webhook
	Replies  []Reply
	Accounts []Account
	Logger   *slog.Logger // nil discards
	// JobID derives every job id; nil means store.JobID (a replay substitutes its own ids).
	JobID func(account, mailbox string, uidvalidity, uid uint32, rule string, action int) string
	// Ledger, when set, is asked whether a message is one of our replies and whether a reply
	// would be a duplicate; nil asks nothing (tools that do not send).
	Ledger Ledger
	// Endpoints, when set, says which webhook endpoints are disabled: their jobs are committed
	// held. nil commits every job pending.
	Endpoints EndpointStates
	// Spool, when set, receives the attachment files of each job that ships attachments inline;
	// nil ships the chosen attachments as metadata only (the payload says it was truncated).
	Spool Spool
	// OnSkip, when set, is called for every reply a loop guard (or the ledger) skipped, with its
	// reason (reply.Skip* or "already_replied" or "template_error"), and for every message ignored
	// as our own (reply name "", reason reply.SkipOwnMessage). Metrics count them.
	OnSkip func(account, reply, reason string)
	// OwnKey is the installation key (store.Backend.InstallationKey): replies are signed with it,
	// and a message it signed is recognised as our own, which triggers nothing at all. nil signs
	// and recognises nothing: then only the weaker signs are seen, which suppress replies only.
	OwnKey []byte
}

// Webhook is one webhook as the pipeline renders its jobs.
type Webhook struct {
	Name         string
	Body         payload.BodyMode // which message bodies the payload carries
	MaxBodyBytes int              // per body; 0 means payload.DefaultMaxBodyBytes
	Attachments  AttachmentMode
	// AttachmentsWhen chooses the attachments shipped inline; nil is the default choice (every
	// attachment that is not an encapsulated message whose parts are listed too).
	AttachmentsWhen *rules.AttachmentFilter
	// MaxInlineBytes caps the attachment content shipped inline per message.
	MaxInlineBytes int64
	// Formatter renders the body; nil renders the webhook payload v1 as JSON.
	Formatter *payload.Formatter
}

// AttachmentMode says what a webhook's payload carries of the attachments.
type AttachmentMode string

// The attachment modes.
const (
	AttachmentsMetadata AttachmentMode = "metadata" // filename, content type, size (the default)
	AttachmentsNone     AttachmentMode = "none"     // no attachment list at all
	AttachmentsInline   AttachmentMode = "inline"   // metadata, and the content of the chosen ones
)

// Reply is one auto-reply: its parsed templates and its loop-guard settings.
type Reply struct {
	Name     string
	Template *reply.Template
	// OwnAddresses are the addresses that count as us for this reply (RFC 3834 §2); empty means
	// the account's Username, when it is an address. The account's From always counts.
	OwnAddresses []string
	// Suppress adds sender patterns to reply.DefaultSuppress().
	Suppress []string
	// MaxReceived: a message with more Received headers is never answered; 0 is the default.
	MaxReceived int
	// OncePer is the period in which a sender gets this reply at most once.
	OncePer time.Duration
}

// Account is what the pipeline needs of an account.
type Account struct {
	Name string
	// TrustedAuthservID names the Authentication-Results header whose verdicts are believed.
	TrustedAuthservID string
	// Username is the IMAP username, one of our addresses when it is an address.
	Username string
	// From and EnvelopeFrom are the From header and envelope sender of the account's replies.
	From, EnvelopeFrom string
}

// Ledger is what the pipeline asks the state store about replies.
type Ledger interface {
	// OwnReply reports whether messageID is one of the replies mailhook sent.
	OwnReply(ctx context.Context, messageID string) (bool, error)
	// Replied reports whether the ledger already holds k (a reply would be a duplicate).
	Replied(ctx context.Context, k store.ReplyKey, now time.Time) (bool, error)
}

var _ Ledger = store.Backend(nil)

// EndpointStates is what the pipeline asks the state store about a webhook endpoint.
type EndpointStates interface {
	Endpoint(ctx context.Context, name string) (store.EndpointState, error)
}

var _ EndpointStates = store.Backend(nil)

// Spool keeps the attachment files of a job until it is delivered; *spool.Spool implements it.
type Spool interface {
	// Attach links files (IMAP section → spooled file) into job id's directory (or the store's
	// blobs), durably.
	Attach(ctx context.Context, id string, files map[string]string) error
}

// Pipeline is the watcher.Handler that turns a fetched message into outbox jobs.
type Pipeline struct {
	rules    *rules.Set
	webhooks map[string]*Webhook
	replies  map[string]*Reply
	accounts map[string]*Account
	own      map[string][]string // account → every own address of the account (ownMessage)
	log      *slog.Logger
	jobID    func(account, mailbox string, uidvalidity, uid uint32, rule string, action int) string
	ledger   Ledger
	states   EndpointStates
	spool    Spool
	onSkip   func(account, reply, reason string)
	ownKey   []byte
}

var _ watcher.Handler = (*Pipeline)(nil)

// New builds the pipeline of cfg. The rules must be compiled; every reply a rule names must have
// its Template, and every webhook a rule names must be in Webhooks.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Rules == nil {
		return nil, errors.New("pipeline: no rules")
	}
	p := &Pipeline{rules: cfg.Rules, webhooks: map[string]*Webhook{}, replies: map[string]*Reply{},
		accounts: map[string]*Account{}, own: map[string][]string{}, log: cfg.Logger, jobID: cfg.JobID,
		ledger: cfg.Ledger, states: cfg.Endpoints, spool: cfg.Spool, onSkip: cfg.OnSkip, ownKey: cfg.OwnKey}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.jobID == nil {
		p.jobID = store.JobID
	}
	if p.onSkip == nil {
		p.onSkip = func(string, string, string) {}
	}
	for i := range cfg.Webhooks {
		w := cfg.Webhooks[i]
		p.webhooks[w.Name] = &w
	}
	for i := range cfg.Replies {
		r := cfg.Replies[i]
		p.replies[r.Name] = &r
	}
	for i := range cfg.Accounts {
		a := cfg.Accounts[i]
		p.accounts[a.Name] = &a
		own := ownAddresses(&a, nil)
		for _, r := range cfg.Replies {
			own = append(own, ownAddresses(&a, &r)...)
		}
		p.own[a.Name] = own
	}
	return p, nil
}

// Match is what one message triggers: the rules it matched (matched once, here), and the
// attachments whose content its jobs ship. It implements watcher.Matched.
type Match struct {
	p       *Pipeline
	env     *rules.Env
	matched []*rules.Rule
	errs    []error
	inline  []message.Attachment
}

var _ watcher.Matched = (*Match)(nil)

// Match matches ev against the rules, once, and chooses the attachments whose content the jobs
// of the matched rules' webhooks ship inline. It does no I/O and logs nothing: what it found
// wrong is logged by Jobs, so a message the watcher skips leaves no line.
func (p *Pipeline) Match(ev *watcher.Event) watcher.Matched { return p.match(ev) }

func (p *Pipeline) match(ev *watcher.Event) *Match {
	trusted := ""
	if a := p.accounts[ev.Account]; a != nil {
		trusted = a.TrustedAuthservID
	}
	m := &Match{p: p, env: rules.NewEnv(ev.Account, ev.Mailbox, ev.UID, ev.Message, trusted)}
	m.matched, m.errs = p.rules.Match(m.env)
	m.inline = p.inlineChoice(ev.Message, m.matched)
	return m
}

// Inline returns the attachments whose content the jobs ship: over the matched rules' webhooks
// with attachments: inline, those each chooses (attachments_when) within its max_inline_bytes.
func (m *Match) Inline() []message.Attachment { return m.inline }

// Handle matches ev and returns its jobs, for callers that fetch no attachment content
// themselves (ev.Spooled as given): it is Match followed by Jobs.
func (p *Pipeline) Handle(ctx context.Context, ev *watcher.Event) ([]store.Job, error) {
	return p.match(ev).Jobs(ctx, ev)
}

// Jobs returns the jobs of every matched rule: one per webhook action, one per reply action whose
// loop guards pass, and one per post-action, depending on the rule's webhook and reply jobs. A
// reply mailhook sent itself yields none at all. ev is the event given to Match, with Spooled
// set to the attachment files the watcher fetched for Inline.
func (m *Match) Jobs(ctx context.Context, ev *watcher.Event) ([]store.Job, error) {
	p := m.p
	own, ours, err := p.ownMessage(ctx, ev)
	if own || err != nil {
		return nil, err
	}
	for _, err := range m.errs {
		p.log.Warn("rule evaluation failed; treated as no match", "account", ev.Account, "mailbox", ev.Mailbox, "uid", ev.UID, "err", err)
		// The message is still committed, and the webhooks of the rules that did match say
		// which rule could not judge it: "rule_failed:NAME" (a run-time pattern over its cost
		// bounds, say).
		var d interface{ Defect() string }
		if ev.Message != nil && errors.As(err, &d) && !slices.Contains(ev.Message.Defects, d.Defect()) {
			ev.Message.Defects = append(ev.Message.Defects, d.Defect())
			slices.Sort(ev.Message.Defects)
		}
	}
	var jobs []store.Job
	for _, r := range m.matched {
		ex := m.extract(r, ev)
		var deps []string // this rule's webhook and reply jobs, which its post-actions wait for
		var post []int    // indexes of its post-actions
		for i, a := range r.Spec.Actions {
			if a.Reply != "" {
				if ours { // it looks like our reply: no answer, whoever sent it
					p.onSkip(ev.Account, a.Reply, reply.SkipOwnMessage)
					continue
				}
				job, err := p.replyJob(ctx, ev, r.Spec.Name, i, a.Reply, ex.fields)
				if err != nil {
					return nil, err
				}
				if job != nil { // nil: a loop guard said no; that counts as done for post-actions
					jobs = append(jobs, *job)
					deps = append(deps, job.ID)
				}
				continue
			}
			if a.Webhook == "" {
				post = append(post, i)
				continue
			}
			job, err := p.webhookJob(ctx, ev, m.env, ex, r.Spec.Name, i, a.Webhook)
			if err != nil {
				return nil, err
			}
			jobs = append(jobs, job)
			deps = append(deps, job.ID)
		}
		pa, err := p.postActionJobs(ev, r.Spec, post, deps)
		if err != nil {
			return nil, err
		}
		jobs = append(jobs, pa...)
		p.log.Info("rule matched", "account", ev.Account, "mailbox", ev.Mailbox, "uid", ev.UID, "rule", r.Spec.Name)
	}
	return jobs, nil
}

// extracted is what a matched rule's extract: computed on a message: its payload's `fields`
// and the defects of the fields that failed (nil for a rule without extract).
type extracted struct {
	fields  map[string]any
	defects []string
}

// extract evaluates rule r's extract fields on the message of ev. A field that fails is null,
// gets the defect extract_failed:NAME in this rule's payloads and one log line; the delivery
// still goes out.
func (m *Match) extract(r *rules.Rule, ev *watcher.Event) extracted {
	fields, errs := m.p.rules.Extract(r, m.env)
	ex := extracted{fields: fields}
	for _, err := range errs {
		m.p.log.Warn("extract field failed; sent as null", "account", ev.Account, "mailbox", ev.Mailbox,
			"uid", ev.UID, "err", err)
		ex.defects = append(ex.defects, err.Defect())
	}
	return ex
}
