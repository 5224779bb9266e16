// Package storeshim bridges the SQLite store to the outbox methods of the store contract while
// the two differ: it gives *store.Store the contract's Claim and NextDue, which take a
// store.Selector (the store calls them ClaimSelected and NextDueSelected), and a Heartbeat that
// renews nothing (the store records no claim owner yet: a claim lives until Finish, and a restart
// recovers it). It exists only until the store implements the contract itself; then the wiring
// and the tests use the store directly and this package goes.
package storeshim

import (
	"context"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Store is a *store.Store whose Claim and NextDue take a selector.
type Store struct{ *store.Store }

// Wrap returns st with the contract's outbox methods.
func Wrap(st *store.Store) Store { return Store{st} }

// Claim is store.Store.ClaimSelected.
func (s Store) Claim(ctx context.Context, sel store.Selector, now time.Time, max int) ([]store.Job, error) {
	return s.Store.ClaimSelected(ctx, sel, now, max)
}

// NextDue is store.Store.NextDueSelected.
func (s Store) NextDue(ctx context.Context, sel store.Selector) (time.Time, bool, error) {
	return s.Store.NextDueSelected(ctx, sel)
}

// Heartbeat renews nothing: the store's claims do not expire.
func (Store) Heartbeat(context.Context, time.Time) error { return nil }
