package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Channel names of the NOTIFY wake-ups: lease releases, and outbox changes that may make a job
// claimable.
const notifyOutbox = "mailhook_outbox"

// listenRetry is how long the wake-up listener waits before reconnecting.
const listenRetry = time.Second

// listen keeps one connection LISTENing on the channels of wake and calls the function of a
// channel for each notification on it, until ctx is cancelled. After (re)connecting it calls every
// function once: notifications sent while it was disconnected are lost. Wake-ups only shorten
// waits; every loop that relies on them also re-checks on a timer.
func (s *Store) listen(ctx context.Context, connCfg *pgx.ConnConfig, wake map[string]func()) {
	failing := false
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, connCfg, wake)
		if ctx.Err() != nil {
			return
		}
		if !failing {
			s.log.Warn("wake-up listener disconnected; reconnecting", "err", err)
			failing = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(listenRetry):
		}
	}
}

func (s *Store) listenOnce(ctx context.Context, cfg *pgx.ConnConfig, wake map[string]func()) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		cancel()
		return err
	}
	defer conn.Close(context.Background())
	for ch := range wake {
		if _, err := conn.Exec(cctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			cancel()
			return err
		}
	}
	cancel()
	for _, fn := range wake {
		fn()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if fn := wake[n.Channel]; fn != nil {
			fn()
		}
	}
}
