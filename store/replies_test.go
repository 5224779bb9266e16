package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func reserve(t *testing.T, s *Store, k ReplyKey, id string, oncePer time.Duration, perDay int, now time.Time) Reservation {
	t.Helper()
	r, err := s.ReserveReply(context.Background(), k, id, oncePer, perDay, now)
	if err != nil {
		t.Fatalf("reserve %v: %v", k, err)
	}
	return r
}

// C52: once per (account, lower-cased sender, reply) per period, across a restart; the entry
// expires exactly when its period has passed, not before (C53).
func TestReplyLedgerAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	s, err := OpenWith(dir, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	week := 7 * 24 * time.Hour
	k := ReplyKey{Account: "acct", Sender: "Alice@Example.COM", Reply: "ack"}
	if r := reserve(t, s, k, "<r1@x>", week, 0, t0); r.Status != ReplyReserved {
		t.Fatalf("first reservation: %+v", r)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir, clk)
	ctx := context.Background()
	for _, sender := range []string{"alice@example.com", "ALICE@EXAMPLE.COM"} {
		k2 := k
		k2.Sender = sender
		if r := reserve(t, s, k2, "<r2@x>", week, 0, t0.Add(week-time.Nanosecond)); r.Status != ReplyDuplicate {
			t.Errorf("after restart, %s within the period: %+v, want duplicate", sender, r)
		}
		if ok, _ := s.Replied(ctx, k2, t0.Add(week-time.Nanosecond)); !ok {
			t.Errorf("Replied(%s) = false within the period", sender)
		}
	}
	// Another reply name or account is another entry.
	if r := reserve(t, s, ReplyKey{Account: "acct", Sender: "alice@example.com", Reply: "other"}, "<r3@x>", week, 0, t0.Add(time.Hour)); r.Status != ReplyReserved {
		t.Errorf("other reply name: %+v", r)
	}
	if r := reserve(t, s, ReplyKey{Account: "acct2", Sender: "alice@example.com", Reply: "ack"}, "<r4@x>", week, 0, t0.Add(time.Hour)); r.Status != ReplyReserved {
		t.Errorf("other account: %+v", r)
	}
	if ok, _ := s.Replied(ctx, k, t0.Add(week)); ok {
		t.Error("Replied = true once the period has passed")
	}
	if r := reserve(t, s, k, "<r5@x>", week, 0, t0.Add(week)); r.Status != ReplyReserved {
		t.Errorf("once the period has passed: %+v, want reserved", r)
	}
	for _, id := range []string{"<r1@x>", "<r5@x>"} {
		if ok, err := s.OwnReply(ctx, id); err != nil || !ok {
			t.Errorf("OwnReply(%s) = %v, %v", id, ok, err)
		}
	}
	if ok, _ := s.OwnReply(ctx, "<r2@x>"); ok {
		t.Error("a refused reservation recorded its Message-ID")
	}
}

// C53: the ledger holds at least 1,000 entries, none forgotten before its period.
func TestReplyLedgerHoldsThousands(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	const n = 1000
	for i := range n {
		k := ReplyKey{Account: "a", Sender: fmt.Sprintf("s%d@example.com", i), Reply: "ack"}
		if r := reserve(t, s, k, fmt.Sprintf("<%d@x>", i), 24*time.Hour, 0, t0.Add(time.Duration(i)*time.Second)); r.Status != ReplyReserved {
			t.Fatalf("entry %d: %+v", i, r)
		}
	}
	late := t0.Add(n * time.Second)
	for i := range n {
		k := ReplyKey{Account: "a", Sender: fmt.Sprintf("s%d@example.com", i), Reply: "ack"}
		if ok, err := s.Replied(context.Background(), k, late); err != nil || !ok {
			t.Fatalf("entry %d forgotten: %v, %v", i, ok, err)
		}
	}
}

// C60: the rolling 24 h cap stops replies at the cap and says when the window allows again;
// C65: a pause stops every reply of the account; a release frees the ledger and the count.
func TestReplyCapPauseRelease(t *testing.T) {
	s := open(t, t.TempDir(), newClock())
	ctx := context.Background()
	key := func(i int) ReplyKey { return ReplyKey{Account: "a", Sender: fmt.Sprintf("s%d@x", i), Reply: "ack"} }
	for i := range 3 {
		if r := reserve(t, s, key(i), fmt.Sprintf("<%d@x>", i), 24*time.Hour, 3, t0.Add(time.Duration(i)*time.Hour)); r.Status != ReplyReserved {
			t.Fatalf("send %d: %+v", i, r)
		}
	}
	r := reserve(t, s, key(3), "<3@x>", 24*time.Hour, 3, t0.Add(3*time.Hour))
	if r.Status != ReplyOverCap || !r.Until.Equal(t0.Add(ReplyWindow)) || r.Sent != 3 {
		t.Fatalf("at the cap: %+v, want over_cap until %v", r, t0.Add(ReplyWindow))
	}
	if n, _ := s.RepliesSent(ctx, "a", t0.Add(3*time.Hour)); n != 3 {
		t.Errorf("RepliesSent = %d, want 3", n)
	}
	// Another account has its own count.
	if r := reserve(t, s, ReplyKey{Account: "b", Sender: "s@x", Reply: "ack"}, "<b@x>", 24*time.Hour, 3, t0.Add(3*time.Hour)); r.Status != ReplyReserved {
		t.Errorf("other account: %+v", r)
	}
	// Once the first send leaves the window, one more fits.
	if r := reserve(t, s, key(3), "<3@x>", 24*time.Hour, 3, t0.Add(ReplyWindow)); r.Status != ReplyReserved {
		t.Errorf("after the window moved: %+v", r)
	}

	// Release: the ledger entry and the count go.
	if err := s.ReleaseReply(ctx, key(3), "<3@x>"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Replied(ctx, key(3), t0.Add(ReplyWindow)); ok {
		t.Error("released reply still in the ledger")
	}
	if ok, _ := s.OwnReply(ctx, "<3@x>"); ok {
		t.Error("released reply still counted as sent")
	}

	// Pause after a daily-limit refusal: until the oldest reply in the window leaves it (here the
	// send at t0+1h, counted from t0+25h: sends at t0+1h, t0+2h and t0+24h are in the window),
	// never shortened by a later, shorter pause; every sender of the account waits.
	until, err := s.PauseReplies(ctx, "a", t0.Add(ReplyWindow), "550 5.4.5")
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour + ReplyWindow); !until.Equal(want) {
		t.Errorf("pause until %v, want %v (oldest send in the window + 24h)", until, want)
	}
	if u2, _ := s.PauseReplies(ctx, "a", t0.Add(ReplyWindow+time.Minute), "again"); !u2.Equal(until) && u2.Before(until) {
		t.Errorf("a later pause shortened the first: %v", u2)
	}
	if r := reserve(t, s, key(9), "<9@x>", 24*time.Hour, 0, t0.Add(ReplyWindow+time.Minute)); r.Status != ReplyPaused || r.Until.Before(until) {
		t.Errorf("while paused: %+v, want paused until %v", r, until)
	}
	if u, ok, _ := s.RepliesPaused(ctx, "a", t0.Add(ReplyWindow+time.Minute)); !ok || u.Before(until) {
		t.Errorf("RepliesPaused = %v, %v", u, ok)
	}
	// Without any reply of its own in the window, an account pauses a whole window.
	if u, _ := s.PauseReplies(ctx, "c", t0, "550 5.4.5"); !u.Equal(t0.Add(ReplyWindow)) {
		t.Errorf("pause without own sends until %v, want %v", u, t0.Add(ReplyWindow))
	}
	end, _, _ := s.RepliesPaused(ctx, "a", t0.Add(ReplyWindow+time.Minute))
	if r := reserve(t, s, key(9), "<9@x>", 24*time.Hour, 0, end); r.Status != ReplyReserved {
		t.Errorf("after the pause: %+v", r)
	}
}
