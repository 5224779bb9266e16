package store

import (
	"strings"
	"testing"
	"time"
)

func TestCheckNew(t *testing.T) {
	for _, tc := range []struct {
		job  Job
		want string // "" : accepted
	}{
		{Job{ID: "a", Kind: KindWebhook}, ""},
		{Job{ID: "a", Kind: KindPostAction, State: StateHeld, DependsOn: []string{"b", "c"}}, ""},
		{Job{Kind: KindWebhook}, "empty id"},
		{Job{ID: "a", Kind: "fax"}, "unknown kind"},
		{Job{ID: "a", Kind: KindReply, State: StateInFlight}, "cannot be created"},
		{Job{ID: "a", Kind: KindReply, DependsOn: []string{"a"}}, "depends on itself"},
		{Job{ID: "a", Kind: KindReply, DependsOn: []string{"b", "b"}}, "repeated dependency"},
		{Job{ID: "a", Kind: KindReply, DependsOn: []string{""}}, "repeated dependency"},
	} {
		err := CheckNew(&tc.job)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckNew(%+v) = %v, want %q", tc.job, err, tc.want)
		}
	}
}

func TestMailboxPostActions(t *testing.T) {
	sel, err := MailboxPostActions(Selector{}, "acct", "INBOX")
	if err != nil || sel.Kind != KindPostAction || sel.Account != "acct" || sel.Mailbox != "INBOX" {
		t.Errorf("empty selector = %+v, %v", sel, err)
	}
	for _, sel := range []Selector{{Kind: KindWebhook}, {Account: "other"}, {Mailbox: "Sent"}} {
		if _, err := MailboxPostActions(sel, "acct", "INBOX"); err == nil {
			t.Errorf("selector %+v of another kind or mailbox accepted", sel)
		}
	}
}

func TestDecideBudget(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	lim := BudgetLimit{Bytes: 100, Window: 24 * time.Hour}
	uses := []BudgetUse{{Ends: t0.Add(3 * time.Hour), Bytes: 30}, {Ends: t0.Add(time.Hour), Bytes: 50}, {Ends: t0.Add(2 * time.Hour), Bytes: 10}}
	for _, tc := range []struct {
		name    string
		uses    []BudgetUse
		n       int64
		granted bool
		until   time.Time
	}{
		{"fits", uses, 5, true, time.Time{}},
		{"fits exactly", uses, 10, true, time.Time{}},
		{"waits for the earliest end that makes room", uses, 50, false, t0.Add(time.Hour)},
		{"waits for two ends", uses, 65, false, t0.Add(2 * time.Hour)},
		{"larger than the limit fits only alone", uses, 150, false, t0.Add(3 * time.Hour)},
		{"larger than the limit, nothing used", nil, 150, true, time.Time{}},
	} {
		g := DecideBudget(tc.uses, tc.n, lim)
		if g.Granted != tc.granted || !g.Until.Equal(tc.until) || (tc.uses != nil && g.Used != 90) {
			t.Errorf("%s: %+v, want granted %v until %v, used 90", tc.name, g, tc.granted, tc.until)
		}
	}
	if uses[0].Bytes != 30 {
		t.Error("DecideBudget reordered its argument")
	}
	if h, err := BudgetHold("a", 1, lim); err != nil || h != DefaultBudgetHold {
		t.Errorf("BudgetHold = %v, %v; want the default", h, err)
	}
	if _, err := BudgetHold("a", -1, lim); err == nil {
		t.Error("negative reservation accepted")
	}
}

func TestReplyDecisions(t *testing.T) {
	k, err := CheckReplyRequest(ReplyKey{Account: "a", Sender: "Bob@Example.TEST", Reply: "r"}, "<id@x>", time.Hour)
	if err != nil || k.Sender != "bob@example.test" {
		t.Errorf("CheckReplyRequest = %+v, %v", k, err)
	}
	if _, err := CheckReplyRequest(ReplyKey{Account: "a", Sender: "b"}, "<id@x>", time.Hour); err == nil {
		t.Error("a key without reply accepted")
	}
	oldest := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	if _, over := ReplyCapped(4, 5, oldest); over {
		t.Error("capped below the cap")
	}
	if _, over := ReplyCapped(40, 0, oldest); over {
		t.Error("capped without a cap")
	}
	if r, over := ReplyCapped(5, 5, oldest); !over || r.Status != ReplyOverCap || !r.Until.Equal(oldest.Add(ReplyWindow)) || r.Sent != 5 {
		t.Errorf("at the cap: %+v, %v", r, over)
	}
}
