package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
)

// ReplayJobID returns the id of the replay named replay of the job whose id is original: "msg_"
// and the lower-case, unpadded base32 of the first 16 bytes of SHA-256 over the fields "replay",
// replay and original, each written as a 4-byte big-endian length followed by its bytes. The
// leading field keeps replay ids apart from JobID's, and the id differs from the original's, so a
// receiver that deduplicates on webhook-id delivers the replay; yet it is the same for the same
// replay name, so running one replay twice queues nothing twice.
func ReplayJobID(replay, original string) string {
	h := sha256.New()
	for _, f := range []string{"replay", replay, original} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	sum := h.Sum(nil)
	return "msg_" + base32.NewEncoding(jobIDAlphabet).WithPadding(base32.NoPadding).EncodeToString(sum[:16])
}

// Enqueue inserts jobs into the outbox in one transaction without touching any checkpoint or
// seen key: the operator's replay of mail that was already processed. The jobs follow the rules
// of Commit (a job whose id exists is left exactly as it is; dependencies must be earlier in jobs
// or stored). It returns the ids it inserted, in order; the others already existed. After the
// transaction Wake fires; a daemon beside a Shared store notices the new jobs within its own
// periodic re-check of the outbox.
func (s *Store) Enqueue(ctx context.Context, jobs []Job) (inserted []string, err error) {
	for i := range jobs {
		if err := checkNew(&jobs[i]); err != nil {
			return nil, fmt.Errorf("enqueue: %w", err)
		}
	}
	if len(jobs) == 0 {
		return nil, nil
	}
	now := s.now()
	err = s.withTx(ctx, func(tx *sql.Tx) error {
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
		return insertJobs(ctx, tx, jobs, now)
	})
	if err != nil {
		return nil, fmt.Errorf("enqueue: %w", err)
	}
	s.broadcast()
	return inserted, nil
}
