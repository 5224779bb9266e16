package postgres

import (
	"context"
	"crypto/rand"
	"fmt"
)

// InstallationKey implements store.Backend: the first call creates the key, replicas racing it
// keep the one that was stored first.
func (s *Store) InstallationKey(ctx context.Context) ([]byte, error) {
	var key [32]byte
	_, _ = rand.Read(key[:]) // never fails (crypto/rand)
	if _, err := s.pool.Exec(ctx, `INSERT INTO installation (name, value) VALUES ('own_key', $1)
ON CONFLICT (name) DO NOTHING`, key[:]); err != nil {
		return nil, fmt.Errorf("installation key: %w", err)
	}
	var out []byte
	if err := s.pool.QueryRow(ctx, `SELECT value FROM installation WHERE name = 'own_key'`).Scan(&out); err != nil {
		return nil, fmt.Errorf("installation key: %w", err)
	}
	return out, nil
}
