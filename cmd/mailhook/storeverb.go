package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
	"github.com/mailhook/mailhook/store/sqlite"
)

// This file is `mailhook store copy`: moving an install from SQLite (state_dir) to the PostgreSQL
// store the configuration names, before the first replica starts there.

const storeUsage = `Usage:
  mailhook store copy -c FILE      copy the SQLite state in state_dir (jobs, checkpoints, seen keys,
                                   ledgers, download budget, endpoint states) into the empty PostgreSQL
                                   store of store.dsn; stop the daemon first
`

// storeVerb runs `mailhook store SUBVERB`.
func storeVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, storeUsage)
		return exitConfig
	}
	switch args[0] {
	case "copy":
		return storeCopy(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, storeUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "mailhook store: unknown subcommand %q;%s want copy\n", args[0], didYouMean(args[0], []string{"copy"}))
	return exitConfig
}

func storeCopy(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("store copy", flag.ContinueOnError)
	path := configFlag(fs)
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	l, code := load(*path, os.LookupEnv, stderr)
	if code != exitOK {
		return code
	}
	if l.cfg.Store.Driver != config.DriverPostgres {
		fmt.Fprintln(stderr, "mailhook store copy: store.driver is not postgres: set the PostgreSQL store to copy into first")
		return exitConfig
	}
	if _, err := os.Stat(filepath.Join(l.cfg.StateDir, sqliteFile)); err != nil {
		fmt.Fprintf(stderr, "mailhook store copy: no SQLite state to copy in %s\n", l.cfg.StateDir)
		return exitFail
	}
	// Not shared: a running daemon holds the state directory's lock, and the copy must not race it.
	src, err := sqlite.Open(l.cfg.StateDir, store.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "mailhook store copy: open the SQLite state (stop the daemon first): %v\n", err)
		return exitFail
	}
	defer src.Close()
	dst, err := postgres.Open(ctx, l.cfg.Store.DSN, store.Options{}, postgres.Options{})
	if err != nil {
		fmt.Fprintf(stderr, "mailhook store copy: %v\n", err)
		return exitFail
	}
	defer dst.Close()
	counts, err := dst.CopyFrom(ctx, func(ctx context.Context, t postgres.CopyTable, row func([]any) error) error {
		return src.CopyRows(ctx, t.Name, t.Columns, row)
	})
	if errors.Is(err, postgres.ErrNotEmpty) {
		fmt.Fprintln(stderr, "mailhook store copy: the PostgreSQL store already holds state; nothing was copied")
		return exitFail
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailhook store copy: %v\n", err)
		return exitFail
	}
	for _, t := range postgres.CopyTables() {
		fmt.Fprintf(stdout, "%-15s %d\n", t.Name, counts[t.Name])
	}
	fmt.Fprintln(stdout, "copied; start the replicas with store.driver: postgres (the SQLite state is left as it was: remove it once they run)")
	return exitOK
}
