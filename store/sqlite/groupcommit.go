package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"

	"github.com/mailhook/mailhook/store"
)

// Group commit of Finish.
//
// Every Finish is a write transaction, and with synchronous=FULL every commit costs an fsync of
// the write-ahead log. When many workers settle jobs at once, one commit each would make the disk,
// not the network, the limit of delivery throughput. So Finish does not commit alone: it queues
// its change, and one caller at a time — the leader — writes everything queued in one
// transaction. Finishes that arrive while that commit runs wait in the queue; when it ends, the
// leader hands the lead to the first of them, which commits all of them together, and so on. An
// idle store commits a lone Finish at once (no timer, no added latency); a busy one commits as
// many Finishes per fsync as arrived during the previous commit.
//
// Each caller returns only once the transaction holding its change has committed (or failed), so
// Finish keeps its contract: when it returns nil the outcome is durable. For webhooks this is what
// keeps delivery at least once: a crash after a receiver answered 2xx but before the batch holding
// the job's Finish committed leaves the job in flight, and Recover after the restart makes it
// pending again, so it is delivered again under the same webhook-id (receivers deduplicate on it).

// finishQueue is the Finishes waiting for the next group commit. The zero value is ready.
type finishQueue struct {
	mu      sync.Mutex
	queue   []*finishOp
	leading bool // a caller is committing; the queue waits for its hand-over
}

// finishOp is one queued Finish.
type finishOp struct {
	id, state string
	next      any   // new next_at (Unix ns), or nil to keep it
	at, now   int64 // attempt time and updated_at, Unix ns
	a         store.Attempt
	err       error         // the outcome, set before ready is closed
	lead      bool          // set before ready is closed: commit the queue instead
	ready     chan struct{} // closed when err is set, or when this caller is to lead
}

// finishGrouped commits op in the next group commit and returns its outcome.
func (s *Store) finishGrouped(ctx context.Context, op *finishOp) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op.ready = make(chan struct{})
	q := &s.finishes
	q.mu.Lock()
	q.queue = append(q.queue, op)
	if q.leading {
		q.mu.Unlock()
		// Waiting is bounded by the commit under way (statements wait at most busy_timeout for a
		// lock), so it ignores ctx: leaving the queue early could leave it without a leader.
		<-op.ready
		if !op.lead {
			return op.err
		}
		q.mu.Lock()
	}
	q.leading = true
	batch := q.queue
	q.queue = nil
	q.mu.Unlock()

	// The transaction carries the other callers' changes too, so one caller's cancellation must
	// not abort it.
	s.commitFinishes(context.WithoutCancel(ctx), batch, op)

	q.mu.Lock()
	if len(q.queue) > 0 {
		next := q.queue[0]
		next.lead = true
		close(next.ready)
	} else {
		q.leading = false
	}
	q.mu.Unlock()
	return op.err
}

// commitFinishes writes batch in one transaction, sets every op's err and closes the ready
// channel of each op but self (the caller, which reads its own err). A job that is no longer in
// flight fails its own Finish only. When the transaction itself fails, each op of a larger batch is
// tried again alone, so one bad change cannot fail the others.
func (s *Store) commitFinishes(ctx context.Context, batch []*finishOp, self *finishOp) {
	if err := s.writeFinishes(ctx, batch); err != nil {
		if len(batch) == 1 {
			batch[0].err = err
		} else {
			for _, op := range batch {
				if err := s.writeFinishes(ctx, []*finishOp{op}); err != nil {
					op.err = err
				}
			}
		}
	}
	wake := false
	for _, op := range batch {
		if op.err != nil {
			op.err = fmt.Errorf("finish job %s as %s: %w", op.id, op.state, op.err)
		} else if op.state == store.StateDone || op.state == store.StatePending {
			wake = true
		}
	}
	if wake {
		s.broadcast()
	}
	for _, op := range batch {
		if op != self {
			close(op.ready)
		}
	}
}

// writeFinishes applies batch in one transaction. It returns the transaction's error; a job that
// is not in flight sets only its op's err (ErrState or ErrNotFound) and writes nothing.
func (s *Store) writeFinishes(ctx context.Context, batch []*finishOp) error {
	stmts, err := s.preparedAll(ctx, `UPDATE jobs
SET state = ?, next_at = COALESCE(?, next_at), last_error = ?, updated_at = ?, claim_owner = '', claim_expires = 0
WHERE id = ? AND state = 'in_flight'`,
		`INSERT INTO attempts (job_id, at, status, error) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		update, insert := tx.StmtContext(ctx, stmts[0]), tx.StmtContext(ctx, stmts[1])
		for _, op := range batch {
			op.err = nil
			res, err := update.ExecContext(ctx, op.state, op.next, op.a.Error, op.now, op.id)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				// Not in flight: say what it is instead (nothing was written for it).
				if op.err = expectState(ctx, tx, op.id, store.StateInFlight); op.err == nil {
					op.err = fmt.Errorf("%w: job changed during finish", store.ErrState)
				}
				continue
			}
			if _, err := insert.ExecContext(ctx, op.id, op.at, op.a.Status, op.a.Error); err != nil {
				return err
			}
		}
		return nil
	})
}
