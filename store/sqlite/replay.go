package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mailhook/mailhook/store"
)

// Enqueue implements store.OutboxAdmin.
func (s *Store) Enqueue(ctx context.Context, jobs []store.Job) (inserted []string, err error) {
	for i := range jobs {
		if err := store.CheckNew(&jobs[i]); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	now := s.now()
	err = s.withWriteTx(ctx, func(w *writeTx) error {
		tx := w.tx
		inserted = inserted[:0]
		exists := make(map[string]bool, len(jobs))
		for _, j := range jobs {
			var one int
			err := tx.QueryRowContext(ctx, `SELECT 1 FROM jobs WHERE id = ?`, j.ID).Scan(&one)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				if !exists[j.ID] {
					inserted = append(inserted, j.ID)
				}
			case err != nil:
				return fmt.Errorf("look up job %s: %w", j.ID, err)
			}
			exists[j.ID] = true
		}
		return w.insertJobs(jobs, now, nil)
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	s.broadcast()
	return inserted, nil
}
