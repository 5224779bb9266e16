package watcher_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/watcher"
)

// fetchAll runs FetchMessages and returns the events it delivered.
func fetchAll(t *testing.T, cfg watcher.Config, sel watcher.Selection) ([]*watcher.Event, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var evs []*watcher.Event
	err := watcher.FetchMessages(ctx, cfg, sel, nil, func(_ context.Context, ev *watcher.Event, _ watcher.Matched) error {
		evs = append(evs, ev)
		return nil
	})
	return evs, err
}

func eventUIDs(evs []*watcher.Event) []uint32 {
	var uids []uint32
	for _, ev := range evs {
		uids = append(uids, ev.UID)
	}
	return uids
}

func TestFetchMessagesSelections(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	uids := appendN(t, srv, 0, 6)
	v, err := srv.UIDValidity("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Plan = watcher.Plan{Text: true}
	tests := []struct {
		name string
		sel  watcher.Selection
		want []uint32
	}{
		{"all", watcher.Selection{}, uids},
		{"last 2", watcher.Selection{Last: 2}, uids[4:]},
		{"range", watcher.Selection{UIDMin: uids[1], UIDMax: uids[3]}, uids[1:4]},
		{"one uid", watcher.Selection{UIDMin: uids[2], UIDMax: uids[2]}, uids[2:3]},
		{"above the highest", watcher.Selection{UIDMin: uids[5] + 1}, nil},
		{"range and last", watcher.Selection{UIDMin: uids[0], UIDMax: uids[3], Last: 1}, uids[3:4]},
		{"since tomorrow", watcher.Selection{Since: time.Now().Add(24 * time.Hour)}, nil},
		{"since an hour ago", watcher.Selection{Since: time.Now().Add(-time.Hour)}, uids},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := fetchAll(t, cfg, tt.sel)
			if err != nil {
				t.Fatalf("FetchMessages: %v\n%s", err, logs.String())
			}
			if got := eventUIDs(evs); !slices.Equal(got, tt.want) {
				t.Fatalf("UIDs %v, want %v", got, tt.want)
			}
			for _, ev := range evs {
				if ev.UIDValidity != v || ev.Account != "acct" || ev.Mailbox != "INBOX" || ev.Message == nil {
					t.Fatalf("event %+v", ev)
				}
			}
		})
	}
	// The plan decides what is fetched: the text is there, the HTML is not.
	evs, err := fetchAll(t, cfg, watcher.Selection{UIDMin: uids[0], UIDMax: uids[0]})
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v, %d events", err, len(evs))
	}
	if m := evs[0].Message; !m.TextFetched || m.Text == "" || m.HTMLFetched {
		t.Errorf("plan text only: text fetched %v (%d bytes), html fetched %v", m.TextFetched, len(m.Text), m.HTMLFetched)
	}

	// The callback's error ends the fetch and is returned as is.
	stop := errors.New("enough")
	calls := 0
	err = watcher.FetchMessages(context.Background(), cfg, watcher.Selection{}, nil, func(context.Context, *watcher.Event, watcher.Matched) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("FetchMessages = %v after %d calls, want the callback's error after 1", err, calls)
	}
	// A bad password fails without a retry loop.
	bad := cfg
	bad.Password = "wrong"
	if _, err := fetchAll(t, bad, watcher.Selection{}); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("bad password: %v", err)
	}
}

// TestFetchMessagesBudget: every byte is charged to the budget, and a budget that cannot grant the
// first pass stops the fetch with an error saying so, having fetched nothing.
func TestFetchMessagesBudget(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	appendN(t, srv, 0, 3)
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), &syncBuffer{})
	cfg.Plan = watcher.Plan{Text: true, HTML: true}

	b, err := watcher.NewBudget(context.Background(), "acct", 100_000_000, nil, watcher.BudgetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Budget = b
	evs, err := fetchAll(t, cfg, watcher.Selection{})
	if err != nil || len(evs) != 3 {
		t.Fatalf("%v, %d events", err, len(evs))
	}
	u := b.Usage()
	if u.Used < 1000 || u.Reserved != 0 {
		t.Errorf("budget after the fetch: %+v; want the bytes read charged and nothing left reserved", u)
	}

	small, err := watcher.NewBudget(context.Background(), "acct", 20_000, nil, watcher.BudgetOptions{Headroom: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Budget = small
	evs, err = fetchAll(t, cfg, watcher.Selection{})
	if err == nil || !strings.Contains(err.Error(), "download budget") || len(evs) != 0 {
		t.Errorf("tiny budget: %v, %d events", err, len(evs))
	}
}

// TestFetchMessagesBatchesGrow: the one-shot fetch's first-pass batches grow like the daemon's
// catch-up (2, 4, 8, then the 6 left of 20 with BatchSize 2 and MaxBatchSize 8), seen in the
// budget reservations of its first passes (a first pass of n messages reserves n times one's).
func TestFetchMessagesBatchesGrow(t *testing.T) {
	srv := testmail.StartMemServer(t, testmail.MemOptions{})
	appendN(t, srv, 0, 20)
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), &syncBuffer{})
	cfg.BatchSize, cfg.MaxBatchSize = 2, 8 // no Plan: first passes only
	b, err := watcher.NewBudget(context.Background(), "acct", 100_000_000, nil, watcher.BudgetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rb := &reservations{Budget: b}
	cfg.Budget = rb
	if evs, err := fetchAll(t, cfg, watcher.Selection{}); err != nil || len(evs) != 20 {
		t.Fatalf("%v, %d events", err, len(evs))
	}
	var sizes []int64
	for _, n := range rb.sizes {
		sizes = append(sizes, n/(rb.sizes[0]/2))
	}
	if want := []int64{2, 4, 8, 6}; !slices.Equal(sizes, want) {
		t.Errorf("first-pass batches %v, want %v", sizes, want)
	}
}

// reservations records the size of every reservation made of its Budget.
type reservations struct {
	watcher.Budget
	sizes []int64
}

func (r *reservations) Reserve(ctx context.Context, n int64, fence watcher.Reserver) (*watcher.Hold, watcher.Throttle, error) {
	r.sizes = append(r.sizes, n)
	return r.Budget.Reserve(ctx, n, fence)
}

// TestDovecotFetchMessagesPeek: on a real server the one-shot fetch changes no flag (EXAMINE and
// BODY.PEEK), and the messages equal what the watcher builds.
func TestDovecotFetchMessagesPeek(t *testing.T) {
	srv := testmail.StartDovecot(t, testmail.DovecotOptions{})
	uids := appendTo(t, srv, "INBOX", 0, 4)
	before := map[uint32][]string{}
	for _, uid := range uids {
		f, err := srv.Flags("INBOX", uid)
		if err != nil {
			t.Fatal(err)
		}
		before[uid] = f
	}
	logs := &syncBuffer{}
	cfg := baseConfig(srv.Addr(), srv.User(), srv.Password(), logs)
	cfg.Plan = watcher.Plan{Text: true, HTML: true}
	evs, err := fetchAll(t, cfg, watcher.Selection{Last: 4})
	if err != nil {
		t.Fatalf("FetchMessages: %v\n%s", err, logs.String())
	}
	if got := eventUIDs(evs); !slices.Equal(got, uids) {
		t.Fatalf("UIDs %v, want %v", got, uids)
	}
	for i, ev := range evs {
		if ev.Message.Subject == "" || ev.Message.Key == "" {
			t.Errorf("uid %d: %+v", ev.UID, ev.Message)
		}
		after, err := srv.Flags("INBOX", uids[i])
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(after, before[uids[i]]) {
			t.Errorf("uid %d flags %v → %v", uids[i], before[uids[i]], after)
		}
	}
}
