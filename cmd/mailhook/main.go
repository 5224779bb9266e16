// Command mailhook watches IMAP mailboxes and turns new mail into signed webhooks.
//
// Verbs: run, check, test, replay, status, outbox, webhooks, demo, auth, healthcheck, version. Every verb exits 2 on a configuration error. main only turns
// SIGINT/SIGTERM into context cancellation; everything else lives in functions the tests call.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	_ "github.com/emersion/go-message/charset" // registers every charset for go-message and our decoders
)

// Exit statuses shared by every verb.
const (
	exitOK     = 0
	exitFail   = 1 // runtime failure (state directory locked, unreadable input, …)
	exitConfig = 2 // bad configuration or usage
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `mailhook watches IMAP mailboxes and turns new mail into signed webhooks.

Usage:
  mailhook run   --config FILE     watch the configured mailboxes and deliver (until SIGTERM)
  mailhook check --config FILE     load the config, compile every rule, print what each rule reads
  mailhook check --online -c FILE  also log in to every IMAP/SMTP server and check every mailbox and folder
  mailhook healthcheck [-c FILE]   GET /healthz of a running mailhook (--ready: /readyz); for HEALTHCHECK
  mailhook test  --config FILE MSG.eml… | -
                                   explain every rule on each message, offline: match or the false clause,
                                   the actions and the exact webhook bodies (--json: one object per message)
  mailhook test  --config FILE --account A [--mailbox M] --last N | --uid N
                                   the same for mail fetched from the server (read-only, PEEK)
  mailhook replay --config FILE --account A [--mailbox M] --since 72h | --uid 100:120 [--rule R] [--dry-run]
                                   re-run the rules on processed mail and queue the jobs under new ids
  mailhook status --config FILE    per account and mailbox: download budget, throttling, checkpoint,
                                   last activity, outbox depth, dead letters (works beside run)
  mailhook outbox list|show|retry|drop -c FILE …
                                   list jobs (--dead), show one with its attempts, requeue (ID… | --all),
                                   drop; works beside run, which picks requeued jobs up within 30s
  mailhook webhooks list|enable -c FILE [NAME]
                                   each webhook: enabled or disabled (410, or failing for disable_after),
                                   its held and dead jobs; enable NAME releases its held jobs (beside run)
  mailhook webhooks test -c FILE NAME  send a signed test event to webhook NAME (exit 0 on 2xx)
  mailhook webhooks secret         print a new whsec_ signing secret
  mailhook store copy -c FILE      copy the SQLite state into the empty PostgreSQL store (daemon stopped)
  mailhook demo  [--once]          run the whole pipeline on an in-process IMAP server and webhook receiver
  mailhook auth  google|microsoft --client-id ID [--client-secret S] --out FILE
                                   get an OAuth2 refresh token for Gmail or Microsoft 365
  mailhook version                 print the version

-c is short for --config, which may also come from MAILHOOK_CONFIG. mailhook VERB --help describes a
verb. Configuration errors exit with status 2.
`

// cli runs one verb and returns the process exit status.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitConfig
	}
	args = configFirst(args)
	verb, rest := args[0], args[1:]
	if wantsHelp(rest) {
		return verbHelp(ctx, verb, rest, stdout, stderr)
	}
	return runVerbNamed(ctx, verb, rest, stdout, stderr)
}

// runVerbNamed runs one verb.
func runVerbNamed(ctx context.Context, verb string, rest []string, stdout, stderr io.Writer) int {
	switch verb {
	case "run":
		return runVerb(ctx, rest, stdout, stderr)
	case "check":
		return checkVerb(ctx, rest, stdout, stderr)
	case "healthcheck":
		return healthcheckVerb(ctx, rest, stdout, stderr)
	case "test":
		return testVerb(ctx, rest, os.Stdin, stdout, stderr)
	case "replay":
		return replayVerb(ctx, rest, stdout, stderr)
	case "demo":
		return demoVerb(ctx, rest, stdout, stderr)
	case "status":
		return statusVerb(ctx, rest, stdout, stderr)
	case "outbox":
		return outboxVerb(ctx, rest, stdout, stderr)
	case "webhooks":
		return webhooksVerb(ctx, rest, stdout, stderr)
	case "store":
		return storeVerb(ctx, rest, stdout, stderr)
	case "auth":
		return authVerb(ctx, rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "mailhook %s\n", version())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "mailhook: unknown verb %q;%s run mailhook --help for the list\n", verb, didYouMean(verb, verbs()))
		return exitConfig
	}
}

// verbHelp answers `mailhook VERB [SUBVERB] … --help`: the verb's help on stdout, exit 0. The verb
// runs with its output captured: its flag parsing meets the help flag before doing anything and
// prints the help; anything else (an unknown verb, a flag error before the help flag) goes to
// stderr with the verb's status.
func verbHelp(ctx context.Context, verb string, rest []string, stdout, stderr io.Writer) int {
	switch verb {
	case "version":
		writeHelp(stdout, verb, nil)
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "outbox", "webhooks", "store":
		if len(rest) == 0 || wantsHelp(rest[:1]) {
			writeHelp(stdout, verb, nil)
			return exitOK
		}
	}
	if _, ok := docOf(verb); !ok {
		return runVerbNamed(ctx, verb, withoutHelp(rest), stdout, stderr)
	}
	var out bytes.Buffer
	code := runVerbNamed(ctx, verb, rest, &out, &out)
	if strings.HasPrefix(out.String(), "mailhook ") && strings.Contains(out.String(), "\nUsage:\n") {
		_, err := out.WriteTo(stdout)
		if err != nil {
			return exitFail
		}
		return exitOK
	}
	_, _ = out.WriteTo(stderr)
	return code
}

// withoutHelp returns args without the help flags.
func withoutHelp(args []string) []string {
	var out []string
	for _, a := range args {
		if a != "-h" && a != "-help" && a != "--help" {
			out = append(out, a)
		}
	}
	return out
}

// buildVersion is set at link time: -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion string

// version reports the link-time version, else the module version, else "dev".
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
