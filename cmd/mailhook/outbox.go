package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// This file is `mailhook outbox`: list, show, retry and drop outbox jobs.
// Every verb opens the state shared, so it works beside a running `mailhook run`: SQLite's WAL
// admits both processes, and the daemon's workers notice a requeued job within their 30 s
// re-check (a write from another process does not reach their wake-up channel).

const outboxUsage = `Usage:
  mailhook outbox list  -c FILE [--dead | --state S] [--webhook NAME] [--json]
                        jobs not yet done (or in state S: pending, in_flight, done, dead, unknown, held)
  mailhook outbox show  -c FILE [--json] ID      a job: its payload and every attempt (time, status, error)
  mailhook outbox retry -c FILE ID… | --all [--webhook NAME]
                        queue dead (or unknown, or held) jobs again; --all: every dead job
  mailhook outbox drop  -c FILE ID…              delete jobs and their attempts
`

// outboxVerb runs `mailhook outbox SUBVERB`.
func outboxVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, outboxUsage)
		return exitConfig
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "list":
		return outboxList(ctx, rest, stdout, stderr)
	case "show":
		return outboxShow(ctx, rest, stdout, stderr)
	case "retry":
		return outboxRetry(ctx, rest, stdout, stderr)
	case "drop":
		return outboxDrop(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, outboxUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "mailhook outbox: unknown subcommand %q;%s want list, show, retry or drop\n", sub,
		didYouMean(sub, []string{"list", "show", "retry", "drop"}))
	return exitConfig
}

// openTool loads the configuration at path and opens its state directory shared. It never
// creates a state directory: without one it says where it looked. The returned status is exitOK,
// exitConfig or exitFail (the error already printed).
func openTool(verb, path string, stderr io.Writer) (*loaded, store.Backend, int) {
	// The operator verbs use no secret: an operator's shell lacks the daemon's environment.
	l, code := loadWith(path, config.Options{NoSecrets: true}, stderr)
	if code != exitOK {
		return nil, nil, code
	}
	if msg := noState(l.cfg.StateDir); msg != "" && l.cfg.Store.Driver != config.DriverPostgres {
		fmt.Fprintf(stderr, "mailhook %s: %s\n", verb, msg)
		return nil, nil, exitFail
	}
	st, err := openConfiguredStore(context.Background(), l.cfg, true)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook %s: open state: %v\n", verb, err)
		return nil, nil, exitFail
	}
	return l, st, exitOK
}

// jobJSON is a job as `outbox list --json` and `outbox show --json` print it.
type jobJSON struct {
	ID          string     `json:"id"`
	Kind        string     `json:"kind"`
	Target      string     `json:"target"`
	State       string     `json:"state"`
	Attempts    int        `json:"attempts"`
	LastError   string     `json:"last_error"`
	NextAt      time.Time  `json:"next_at"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	Rule        string     `json:"rule"`
	Account     string     `json:"account"`
	Mailbox     string     `json:"mailbox"`
	UIDValidity uint32     `json:"uidvalidity"`
	UID         uint32     `json:"uid"`
	DependsOn   []string   `json:"depends_on"`
	Body        any        `json:"body,omitempty"` // show only: the JSON body, or a string
	History     []attempts `json:"history,omitempty"`
}

// attempts is one recorded attempt in JSON.
type attempts struct {
	At     time.Time `json:"at"`
	Status string    `json:"status"`
	Error  string    `json:"error"`
}

func toJSON(j store.Job) jobJSON {
	deps := j.DependsOn
	if deps == nil {
		deps = []string{}
	}
	return jobJSON{ID: j.ID, Kind: j.Kind, Target: j.Target, State: j.State, Attempts: j.Attempts,
		LastError: j.LastError, NextAt: j.NextAt, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, Rule: j.Rule,
		Account: j.Account, Mailbox: j.Mailbox, UIDValidity: j.UIDValidity, UID: j.UID, DependsOn: deps}
}

// listStates are the states `outbox list` shows by default: everything not done.
var listStates = []string{store.StatePending, store.StateInFlight, store.StateHeld, store.StateDead, store.StateUnknown}

func outboxList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outbox list", flag.ContinueOnError)
	path := configFlag(fs)
	dead := fs.Bool("dead", false, "only dead letters (same as --state dead)")
	state := fs.String("state", "", "only jobs in this `state`")
	webhook := fs.String("webhook", "", "only jobs of this webhook (or other target)")
	asJSON := fs.Bool("json", false, "print a JSON array")
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	states := listStates
	switch {
	case *dead && *state != "":
		fmt.Fprintln(stderr, "mailhook outbox list: use --dead or --state, not both")
		return exitConfig
	case *dead:
		states = []string{store.StateDead}
	case *state != "":
		if !slices.Contains(append(slices.Clone(listStates), store.StateDone), *state) {
			fmt.Fprintf(stderr, "mailhook outbox list: --state %q is not one of pending, in_flight, done, dead, unknown, held\n", *state)
			return exitConfig
		}
		states = []string{*state}
	}
	_, st, code := openTool("outbox list", *path, stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	var jobs []store.Job
	for _, s := range states {
		js, err := st.Jobs(ctx, store.Filter{Selector: store.Selector{Target: *webhook}, State: s})
		if err != nil {
			fmt.Fprintf(stderr, "mailhook outbox list: %v\n", err)
			return exitFail
		}
		jobs = append(jobs, js...)
	}
	// Insertion order across the states: created_at, then id (ids of one message are stable).
	slices.SortStableFunc(jobs, func(a, b store.Job) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	if *asJSON {
		out := make([]jobJSON, 0, len(jobs))
		for _, j := range jobs {
			out = append(out, toJSON(j))
		}
		return printJSON(stdout, stderr, out)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(stdout, "no jobs")
		return exitOK
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tTARGET\tSTATE\tATTEMPTS\tNEXT/UPDATED\tRULE\tMESSAGE\tLAST ERROR")
	for _, j := range jobs {
		when := j.UpdatedAt
		if j.State == store.StatePending {
			when = j.NextAt
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s/%s uid %d\t%s\n", j.ID, j.Kind, j.Target, j.State, j.Attempts,
			when.Local().Format(time.RFC3339), j.Rule, j.Account, j.Mailbox, j.UID, cell(j.LastError, 200))
	}
	if err := tw.Flush(); err != nil {
		return exitFail
	}
	return exitOK
}

func outboxShow(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outbox show", flag.ContinueOnError)
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print one JSON object")
	fs.SetOutput(stderr)
	ids, ok := parseInterspersed(fs, args)
	if !ok {
		return exitConfig
	}
	if len(ids) != 1 {
		fmt.Fprintf(stderr, "mailhook outbox show: want one job ID\n\n%s", outboxUsage)
		return exitConfig
	}
	l, st, code := openTool("outbox show", *path, stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	j, as, err := st.Job(ctx, ids[0])
	if err != nil {
		fmt.Fprintf(stderr, "mailhook outbox show: %v\n", err)
		return exitFail
	}
	// Inline attachments: a description in place of the spool's internal reference.
	j.Body = dispatch.DescribeInline(ctx, spool.ForReading(l.cfg.StateDir, blobsOf(st)), j.ID, j.Body)
	if *asJSON {
		out := toJSON(j)
		if json.Valid(j.Body) {
			out.Body = json.RawMessage(j.Body)
		} else if len(j.Body) > 0 {
			out.Body = string(j.Body)
		}
		out.History = []attempts{}
		for _, a := range as {
			out.History = append(out.History, attempts{At: a.At, Status: a.Status, Error: a.Error})
		}
		return printJSON(stdout, stderr, out)
	}
	fmt.Fprintf(stdout, "job %s\n", j.ID)
	fmt.Fprintf(stdout, "  kind %s, target %s, rule %s\n", j.Kind, j.Target, j.Rule)
	fmt.Fprintf(stdout, "  message %s/%s uidvalidity %d uid %d\n", j.Account, j.Mailbox, j.UIDValidity, j.UID)
	fmt.Fprintf(stdout, "  state %s, %d attempts, created %s, updated %s\n", j.State, j.Attempts,
		j.CreatedAt.Local().Format(time.RFC3339), j.UpdatedAt.Local().Format(time.RFC3339))
	if j.State == store.StatePending {
		fmt.Fprintf(stdout, "  next attempt %s\n", j.NextAt.Local().Format(time.RFC3339))
	}
	if len(j.DependsOn) > 0 {
		fmt.Fprintf(stdout, "  waits for %s\n", strings.Join(j.DependsOn, ", "))
	}
	if j.LastError != "" {
		fmt.Fprintf(stdout, "  last error: %s\n", j.LastError)
	}
	fmt.Fprintf(stdout, "attempts (%d):\n", len(as))
	for _, a := range as {
		line := fmt.Sprintf("  %s  %s", a.At.Local().Format(time.RFC3339), a.Status)
		if a.Error != "" {
			line += "  " + a.Error
		}
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintf(stdout, "payload (%d bytes):\n", len(j.Body))
	var pretty bytes.Buffer
	if json.Indent(&pretty, j.Body, "", "  ") == nil {
		fmt.Fprintln(stdout, pretty.String())
	} else {
		fmt.Fprintln(stdout, string(j.Body))
	}
	return exitOK
}

func outboxRetry(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outbox retry", flag.ContinueOnError)
	path := configFlag(fs)
	all := fs.Bool("all", false, "every dead job")
	webhook := fs.String("webhook", "", "with --all: only the dead jobs of this webhook (or other target)")
	fs.SetOutput(stderr)
	ids, ok := parseInterspersed(fs, args)
	if !ok {
		return exitConfig
	}
	if *all == (len(ids) > 0) || (*webhook != "" && !*all) {
		fmt.Fprintf(stderr, "mailhook outbox retry: give job IDs, or --all [--webhook NAME]\n\n%s", outboxUsage)
		return exitConfig
	}
	_, st, code := openTool("outbox retry", *path, stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	if *all {
		dead, err := st.Jobs(ctx, store.Filter{Selector: store.Selector{Target: *webhook}, State: store.StateDead})
		if err != nil {
			fmt.Fprintf(stderr, "mailhook outbox retry: %v\n", err)
			return exitFail
		}
		ids = ids[:0]
		for _, j := range dead {
			ids = append(ids, j.ID)
		}
	}
	failed, done := 0, 0
	disabled := map[string]bool{}
	for _, id := range ids {
		j, _, err := st.Job(ctx, id)
		if err == nil && j.Kind == store.KindWebhook && len(j.Body) == 0 {
			// Its body could not be rendered (see formats.go): sending it again would send nothing.
			err = fmt.Errorf("job %s has no body (%s); drop it, or fix the template and replay the message", id, j.LastError)
		}
		if err == nil && j.State == store.StateDone {
			err = fmt.Errorf("job %s was delivered (%s): retry sends only dead, unknown or held jobs; to send the message again under a new id: mailhook replay --config %s --account %s --mailbox %s --uid %d",
				id, j.UpdatedAt.Local().Format(time.RFC3339), *path, j.Account, j.Mailbox, j.UID)
		}
		if err == nil {
			err = st.Requeue(ctx, id, time.Now())
		}
		if err != nil {
			fmt.Fprintf(stderr, "mailhook outbox retry: %v\n", err)
			failed++
			continue
		}
		done++
		if j.Kind == store.KindWebhook && !disabled[j.Target] {
			if e, err := st.Endpoint(ctx, j.Target); err == nil && e.Disabled() {
				disabled[j.Target] = true
				fmt.Fprintf(stderr, "mailhook outbox retry: webhook %s is disabled (%s): its jobs stay held until `mailhook webhooks enable %s`\n",
					j.Target, e.Reason, j.Target)
			}
		}
	}
	if done > 0 || failed == 0 {
		fmt.Fprintf(stdout, "requeued %d jobs; a running mailhook picks them up within %s\n", done, recheckHint)
	}
	if failed > 0 {
		return exitFail
	}
	return exitOK
}

// recheckHint is how soon a running daemon notices a change made by a tool (dispatch's recheck).
const recheckHint = "30s"

func outboxDrop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outbox drop", flag.ContinueOnError)
	path := configFlag(fs)
	fs.SetOutput(stderr)
	ids, ok := parseInterspersed(fs, args)
	if !ok {
		return exitConfig
	}
	if len(ids) == 0 {
		fmt.Fprintf(stderr, "mailhook outbox drop: want job IDs\n\n%s", outboxUsage)
		return exitConfig
	}
	_, st, code := openTool("outbox drop", *path, stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	failed, done := 0, 0
	for _, id := range ids {
		if err := st.Drop(ctx, id); err != nil {
			if errors.Is(err, store.ErrState) {
				err = fmt.Errorf("%w (a job in flight cannot be dropped; try again in a moment)", err)
			}
			fmt.Fprintf(stderr, "mailhook outbox drop: %v\n", err)
			failed++
			continue
		}
		done++
	}
	fmt.Fprintf(stdout, "dropped %d jobs\n", done)
	if failed > 0 {
		return exitFail
	}
	return exitOK
}

// printJSON writes v as indented JSON.
func printJSON(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "mailhook: %v\n", err)
		return exitFail
	}
	return exitOK
}

// cell makes s one line of at most max bytes, for a table cell.
func cell(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max] + "…"
}

// stateDBFile is the database file the store keeps in state_dir.
const stateDBFile = "mailhook.db"

// noState returns "" when dir holds mailhook's state, else a message naming the absolute path
// looked at and, for a relative state_dir, the working directory it was resolved against.
func noState(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	if _, err := os.Stat(filepath.Join(abs, stateDBFile)); err == nil {
		return ""
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("state at %s: %v", abs, err)
	}
	if filepath.IsAbs(dir) {
		return fmt.Sprintf("no state at %s: mailhook run has not run with this state_dir yet", abs)
	}
	wd, _ := os.Getwd()
	return fmt.Sprintf("no state at %s (state_dir %q is relative to the working directory, here %s): run this from the directory mailhook run runs in, or make state_dir absolute", abs, dir, wd)
}
