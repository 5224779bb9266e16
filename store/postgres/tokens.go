package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// refreshTxTimeout bounds how long a refresh may hold an account's token row: longer than one
// token request (30 s by default), so a replica frozen in the middle of a refresh holds up the
// others at most this long before the server ends its session.
const refreshTxTimeout = time.Minute

// RefreshToken returns the refresh token of account as last rotated by any replica ("" and false
// when none was stored yet).
func (s *Store) RefreshToken(ctx context.Context, account string) (string, bool, error) {
	var rt string
	err := s.pool.QueryRow(ctx, `SELECT refresh_token FROM oauth_tokens WHERE name = $1 AND refresh_token <> ''`, account).Scan(&rt)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read refresh token of %q: %w", account, err)
	}
	return rt, true, nil
}

// RefreshWith runs one refresh of account's token at a time across every replica: it locks the
// account's token row, calls refresh with the stored refresh token ("" and false when none is
// stored yet), and stores what refresh returns (when it returns a non-empty token and no error)
// before releasing the lock. Two replicas rotating one refresh token at once can get it revoked;
// the second waits here and is handed the first's rotated token. refresh runs inside the
// transaction: keep it to the token request.
func (s *Store) RefreshWith(ctx context.Context, account string, refresh func(current string, ok bool) (rotated string, err error)) error {
	var ferr error
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL idle_in_transaction_session_timeout = %d", refreshTxTimeout.Milliseconds())); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO oauth_tokens (name, refresh_token, updated_at) VALUES ($1, '', 0)
ON CONFLICT (name) DO NOTHING`, account); err != nil {
			return err
		}
		var cur string
		if err := tx.QueryRow(ctx, `SELECT refresh_token FROM oauth_tokens WHERE name = $1 FOR UPDATE`, account).Scan(&cur); err != nil {
			return err
		}
		var next string
		next, ferr = refresh(cur, cur != "")
		if ferr != nil || next == "" || next == cur {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE oauth_tokens SET refresh_token = $2, updated_at = $3 WHERE name = $1`,
			account, next, dbTime(s.now()))
		return err
	})
	if err != nil {
		return fmt.Errorf("refresh token of %q: %w", account, err)
	}
	return ferr
}
