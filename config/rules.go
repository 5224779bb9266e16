package config

// The rules section: which messages (an expression, compiled by the rules package) get which
// actions (webhooks, replies and mailbox post-actions).

import (
	"fmt"
	"strings"
)

// Rule runs its actions for every message its When expression matches.
type Rule struct {
	Name    string   `mapstructure:"name"`
	Account string   `mapstructure:"account"` // optional filter: an account name
	Mailbox string   `mapstructure:"mailbox"` // optional filter: a watched mailbox
	When    string   `mapstructure:"when"`    // expr-lang expression (compiled by the rules package)
	Actions []Action `mapstructure:"actions"`
	Stop    bool     `mapstructure:"stop"` // no later rule runs when this one matched
	// Extract maps a field name to an expression evaluated when the rule matches, into the
	// payload's `fields` and the templates' .Fields. Names keep the case they were written in
	// (parse restores it: viper lower-cases map keys).
	Extract map[string]string `mapstructure:"extract"`
}

// Action is one action of a rule; exactly one field is set (see Kind).
type Action struct {
	Webhook  string   `mapstructure:"webhook"`   // webhook name
	Reply    string   `mapstructure:"reply"`     // reply name
	MarkSeen bool     `mapstructure:"mark_seen"` // set \Seen
	Flag     []string `mapstructure:"flag"`      // flags or keywords to set, e.g. \Flagged, $Label
	Move     string   `mapstructure:"move"`      // mailbox to move the message to
	Copy     string   `mapstructure:"copy"`      // mailbox to copy the message to
}

// Action kinds, as returned by Action.Kind.
const (
	ActionWebhook  = "webhook"
	ActionReply    = "reply"
	ActionMarkSeen = "mark_seen"
	ActionFlag     = "flag"
	ActionMove     = "move"
	ActionCopy     = "copy"
)

// Kind returns which action a is (one of the Action* constants), or "" when no field or more than
// one field is set (Validate refuses both).
func (a Action) Kind() string {
	kinds := a.kinds()
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

func (a Action) kinds() []string {
	var k []string
	if a.Webhook != "" {
		k = append(k, ActionWebhook)
	}
	if a.Reply != "" {
		k = append(k, ActionReply)
	}
	if a.MarkSeen {
		k = append(k, ActionMarkSeen)
	}
	if len(a.Flag) > 0 {
		k = append(k, ActionFlag)
	}
	if a.Move != "" {
		k = append(k, ActionMove)
	}
	if a.Copy != "" {
		k = append(k, ActionCopy)
	}
	return k
}

// applyDefaults spells every case of INBOX as "INBOX" in the rule's mailbox filter and its move and
// copy targets.
func (r *Rule) applyDefaults() {
	r.Mailbox = canonicalMailbox(r.Mailbox)
	for j := range r.Actions {
		r.Actions[j].Move = canonicalMailbox(r.Actions[j].Move)
		r.Actions[j].Copy = canonicalMailbox(r.Actions[j].Copy)
	}
}

// ruleWarnings notes rule setups that work but are probably not what was meant.
func (c *Config) ruleWarnings() (warnings []string) {
	if len(c.Accounts) > 0 && len(c.Rules) == 0 {
		warnings = append(warnings, "rules: none configured; new mail is checkpointed and nothing else happens")
	}
	for i, r := range c.Rules {
		path := ItemPath("rules", i, r.Name)
		for j, act := range r.Actions {
			if act.Move == "" {
				continue
			}
			for _, a := range c.RuleAccounts(r) {
				if (r.Mailbox == "" || SameMailbox(r.Mailbox, act.Move)) && a.watches(act.Move) {
					warnings = append(warnings, fmt.Sprintf("%s.actions[%d].move: %q is watched by account %q and the rule applies there too: moved mail will match again",
						path, j, act.Move, a.Name))
				}
			}
		}
	}
	return warnings
}

// RuleAccounts returns the accounts rule r can apply to: its account, or every account watching its
// mailbox (all of them without a mailbox filter).
func (c *Config) RuleAccounts(r Rule) []*Account {
	var out []*Account
	for i := range c.Accounts {
		a := &c.Accounts[i]
		if r.Account != "" && a.Name != r.Account {
			continue
		}
		if r.Mailbox != "" && !a.watches(r.Mailbox) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// ruleRefs are the names a rule may refer to, each set built by Validate.
type ruleRefs struct{ accounts, webhooks, replies map[string]bool }

func (c *Config) validateRule(p *problems, i int, names ruleRefs) {
	r := c.Rules[i]
	path := ItemPath("rules", i, r.Name)
	if r.Account != "" && !names.accounts[r.Account] {
		p.add(path+".account", "no account named %q", r.Account)
	}
	if r.Mailbox != "" && (r.Account == "" || names.accounts[r.Account]) && len(c.RuleAccounts(r)) == 0 {
		if r.Account != "" {
			p.add(path+".mailbox", "%q is not in the mailboxes of account %q", r.Mailbox, r.Account)
		} else {
			p.add(path+".mailbox", "%q is not watched by any account", r.Mailbox)
		}
	}
	if strings.TrimSpace(r.When) == "" {
		p.add(path+".when", "required (use 'true' to match every message)")
	}
	if len(r.Actions) == 0 {
		p.add(path+".actions", "at least one action is required")
	}
	moved := false
	for j, act := range r.Actions {
		ap := fmt.Sprintf("%s.actions[%d]", path, j)
		kinds := act.kinds()
		if len(kinds) == 0 {
			p.add(ap, "no action set (one of webhook, reply, mark_seen: true, flag, move, copy)")
			continue
		}
		if len(kinds) > 1 {
			p.add(ap, "sets %s: one action per list item", strings.Join(kinds, " and "))
			continue
		}
		if moved && kinds[0] != ActionWebhook && kinds[0] != ActionReply {
			p.add(ap+"."+kinds[0], "comes after a move: the message is no longer in the mailbox")
		}
		moved = moved || kinds[0] == ActionMove
		c.validateAction(p, ap, r, act, names)
	}
}

// validateAction checks action act (of rule r, at path) that sets exactly one field.
func (c *Config) validateAction(p *problems, path string, r Rule, act Action, names ruleRefs) {
	switch act.Kind() {
	case ActionWebhook:
		if !names.webhooks[act.Webhook] {
			p.add(path+".webhook", "no webhook named %q", act.Webhook)
		}
	case ActionReply:
		if !names.replies[act.Reply] {
			p.add(path+".reply", "no reply named %q", act.Reply)
		}
		for _, a := range c.RuleAccounts(r) {
			if !a.SMTP.Configured() {
				p.add(path+".reply", "account %q has no smtp.host to send replies through", a.Name)
			}
		}
	case ActionFlag:
		for k, f := range act.Flag {
			if !validFlag(f) {
				p.add(fmt.Sprintf("%s.flag[%d]", path, k), "%q is not a valid IMAP flag or keyword", f)
			}
		}
	case ActionMove:
		if strings.TrimSpace(act.Move) == "" {
			p.add(path+".move", "empty mailbox name")
		}
	case ActionCopy:
		if strings.TrimSpace(act.Copy) == "" {
			p.add(path+".copy", "empty mailbox name")
		}
	}
}

// validFlag reports whether f can be sent in STORE +FLAGS: a keyword atom, or a system flag
// (RFC 3501 §2.3.2) other than \Recent, which clients cannot set.
func validFlag(f string) bool {
	atom := strings.TrimPrefix(f, `\`)
	if atom == "" || strings.EqualFold(f, `\Recent`) {
		return false
	}
	// RFC 3501 §9: atom-specials are ( ) { SP CTL % * " \ ].
	return !strings.ContainsFunc(atom, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r > 0x7e || strings.ContainsRune(`(){%*"\]`, r)
	})
}
