package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/mailhook/mailhook/config"
)

// verbDoc is what `mailhook VERB --help` prints besides the flags.
type verbDoc struct {
	summary string // what the verb does, one sentence
	usage   string // the command line, as the docs write it
	example string // one command to copy
	details string // more, printed after the usage; may be ""
}

// docOf returns the help of a verb or subverb ("outbox list"); ok is false for an unknown name.
func docOf(name string) (verbDoc, bool) {
	switch name {
	case "run":
		return verbDoc{"watch every configured mailbox and deliver, until SIGINT or SIGTERM.",
			"mailhook run --config FILE",
			"mailhook run --config /etc/mailhook/config.yaml", ""}, true
	case "check":
		return verbDoc{"load the configuration, compile every rule and print what each mailbox fetches; with --online, also log in to every server and check every mailbox and folder. Exit 2 on a configuration error, 1 when an online check fails.",
			"mailhook check --config FILE [--online]",
			"mailhook check --config mailhook.yaml --online", ""}, true
	case "healthcheck":
		return verbDoc{"GET /healthz (or /readyz with --ready) of a running mailhook, at --addr or the config's http.listen; exit 0 on 200. The container HEALTHCHECK.",
			"mailhook healthcheck [--config FILE | --addr HOST:PORT] [--ready]",
			"mailhook healthcheck --config /etc/mailhook/config.yaml", ""}, true
	case "test":
		return verbDoc{"explain every rule on each message without delivering anything: match or the clause that was false, the actions, and the exact webhook bodies. Messages come from files, standard input (-) or the server (--last/--uid, read-only).",
			"mailhook test --config FILE [--account A] [--mailbox M] [--json] MSG.eml… | -\n  mailhook test --config FILE --account A [--mailbox M] --last N | --uid N",
			"mailhook test --config mailhook.yaml invoice.eml",
			`Files (or - for standard input) are parsed offline: nothing is fetched, queued or sent. With
--last or --uid the messages are fetched from the account's server (read-only, BODY.PEEK, only the
parts the fetch plan needs, charged to the download budget). Files are tested as if they arrived
in --account (default: the first account) and --mailbox (default: its first mailbox).
Exit status: 0 when every message was read (defects allowed), 1 when one could not be, 2 on a bad
configuration or usage.`}, true
	case "replay":
		return verbDoc{"re-run the rules on mail already processed and queue the jobs under new ids, beside a running daemon.",
			"mailhook replay --config FILE --account A [--mailbox M] --since DURATION | --uid RANGE [--rule R] [--dry-run]",
			"mailhook replay --config mailhook.yaml --account personal --since 72h --dry-run", ""}, true
	case "demo":
		return verbDoc{"run the whole pipeline on an in-process IMAP server and webhook receiver with sample mail; no account needed.",
			"mailhook demo [--once]",
			"go run ./cmd/mailhook demo", ""}, true
	case "status":
		return verbDoc{"print, per account, the download budget and throttling and, per mailbox, the checkpoint, last activity, outbox depth and dead letters. Reads the state directory; works beside run.",
			"mailhook status --config FILE",
			"mailhook status --config /etc/mailhook/config.yaml", ""}, true
	case "outbox":
		return verbDoc{"inspect and repair deliveries: list, show, retry, drop. Works beside run.",
			"mailhook outbox list|show|retry|drop --config FILE …",
			"mailhook outbox list --config mailhook.yaml --dead", ""}, true
	case "outbox list":
		return verbDoc{"list the outbox jobs not yet done (or those in --state): id, target, state, attempts, next attempt, last error.",
			"mailhook outbox list --config FILE [--dead | --state S] [--webhook NAME] [--json]",
			"mailhook outbox list --config mailhook.yaml --dead", ""}, true
	case "outbox show":
		return verbDoc{"show one job: its stored payload and every attempt with its time, status and error.",
			"mailhook outbox show --config FILE [--json] ID",
			"mailhook outbox show --config mailhook.yaml msg_5QK3…", ""}, true
	case "outbox retry":
		return verbDoc{"queue dead (or unknown, or held) jobs again under the same ids; a running daemon sends them within 30 s.",
			"mailhook outbox retry --config FILE ID… | --all [--webhook NAME]",
			"mailhook outbox retry --config mailhook.yaml --all --webhook ci", ""}, true
	case "outbox drop":
		return verbDoc{"delete jobs and their attempts (not one in flight, not one that pending mailbox actions wait for).",
			"mailhook outbox drop --config FILE ID…",
			"mailhook outbox drop --config mailhook.yaml msg_5QK3…", ""}, true
	case "webhooks":
		return verbDoc{"list the webhooks with their state, enable a disabled one (both work beside run), send a test event, or make a new signing secret.",
			"mailhook webhooks list|enable|test --config FILE … | mailhook webhooks secret",
			"mailhook webhooks list --config mailhook.yaml", ""}, true
	case "webhooks list":
		return verbDoc{"print each webhook: enabled or disabled (since, why), failing since, and its pending, in-flight, held and dead jobs.",
			"mailhook webhooks list --config FILE [--json]",
			"mailhook webhooks list --config mailhook.yaml", ""}, true
	case "webhooks enable":
		return verbDoc{"enable a disabled webhook and release its held jobs; a running daemon sends them within 30 s.",
			"mailhook webhooks enable --config FILE NAME",
			"mailhook webhooks enable --config mailhook.yaml ci", ""}, true
	case "webhooks test":
		return verbDoc{"send a signed test event to one webhook, in its format (a chat message that says it is a test; for json, \"type\": \"mailhook.test\"), and print the status and latency; exit 0 on 2xx. Nothing is queued.",
			"mailhook webhooks test --config FILE NAME",
			"mailhook webhooks test --config mailhook.yaml ci", ""}, true
	case "webhooks secret":
		return verbDoc{"print a new signing secret (whsec_ and the base64 of 32 random bytes) for a webhook's secrets: and its receiver.",
			"mailhook webhooks secret",
			"export CI_WEBHOOK_SECRET=$(mailhook webhooks secret)", ""}, true
	case "auth":
		return verbDoc{"get an OAuth2 refresh token for Gmail (google), Microsoft 365 (microsoft) or another provider (custom) and write it to --out.",
			"mailhook auth google|microsoft|custom --client-id ID [--client-secret S] --out FILE",
			"mailhook auth microsoft --client-id 00000000-… --tenant contoso.onmicrosoft.com --out m365.refresh",
			`The token is written to FILE (mode 0600), for oauth2.refresh_token_file; it is never printed.
  google     authorization-code flow with PKCE: open the printed URL in a browser; the browser is
             sent back to 127.0.0.1 (use --listen 127.0.0.1:PORT and ssh -L PORT:127.0.0.1:PORT
             to authorise a headless host from your workstation). Google's device flow does not
             allow the Gmail scope.
  microsoft  device-code flow: open the printed URL anywhere and enter the code; works headless.
  custom     like google, with --auth-url, --token-url and --scope (or --flow device and
             --device-url).`}, true
	case "store", "store copy":
		return verbDoc{"copy the SQLite state of state_dir (jobs, checkpoints, seen keys, ledgers, download budget, endpoint states) into the empty PostgreSQL store of store.dsn; stop the daemon first.",
			"mailhook store copy --config FILE",
			"mailhook store copy --config /etc/mailhook/config.yaml", ""}, true
	case "version":
		return verbDoc{"print the version.", "mailhook version", "mailhook version", ""}, true
	}
	return verbDoc{}, false
}

// verbs are the top-level verbs, for did-you-mean.
func verbs() []string {
	return []string{"run", "check", "healthcheck", "test", "replay", "demo", "status", "outbox", "webhooks",
		"store", "auth", "version", "help"}
}

// printHelp writes the help of the verb fs parses for: what it does, its usage, its flags with
// --double-dash names (-c is shown beside --config), and an example.
func printHelp(w io.Writer, fs *flag.FlagSet) {
	writeHelp(w, fs.Name(), fs)
}

func writeHelp(w io.Writer, name string, fs *flag.FlagSet) {
	doc, _ := docOf(name)
	fmt.Fprintf(w, "mailhook %s: %s\n\nUsage:\n  %s\n", name, doc.summary, doc.usage)
	if doc.details != "" {
		fmt.Fprintf(w, "\n%s\n", doc.details)
	}
	if fs != nil {
		type row struct{ left, right string }
		var rows []row
		width := 0
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "c" {
				return
			}
			arg, usage := flag.UnquoteUsage(f)
			left := "--" + f.Name
			if f.Name == "config" {
				left = "-c, --config"
				usage += "; default $MAILHOOK_CONFIG"
			}
			if arg == "string" {
				arg = f.Name
			}
			if arg != "" {
				left += " " + strings.ToUpper(arg)
			}
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" && f.Name != "config" {
				usage += " (default " + f.DefValue + ")"
			}
			rows = append(rows, row{left, usage})
			width = max(width, len(left))
		})
		if len(rows) > 0 {
			fmt.Fprintf(w, "\nFlags:\n")
			for _, r := range rows {
				fmt.Fprintf(w, "  %-*s  %s\n", width, r.left, r.right)
			}
		}
	}
	fmt.Fprintf(w, "\nExample:\n  %s\n", doc.example)
}

// wantsHelp reports whether args ask for help (-h, -help or --help before a "--").
func wantsHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

// didYouMean returns " did you mean "X"?" for the candidate got is a likely typo of, else "".
func didYouMean(got string, candidates []string) string {
	if best := config.Suggest(got, candidates); best != "" {
		return fmt.Sprintf(" did you mean %q?", best)
	}
	return ""
}

// configFirst turns `mailhook -c FILE VERB …` (and --config FILE, --config=FILE) into
// `mailhook VERB -c FILE …`, so the flag may come before the verb.
func configFirst(args []string) []string {
	if len(args) == 0 {
		return args
	}
	var flagArgs []string
	rest := args
	switch {
	case slices.Contains([]string{"-c", "-config", "--config"}, args[0]) && len(args) >= 3:
		flagArgs, rest = args[:2], args[2:]
	case strings.HasPrefix(args[0], "--config=") || strings.HasPrefix(args[0], "-config=") || strings.HasPrefix(args[0], "-c="):
		flagArgs, rest = args[:1], args[1:]
	default:
		return args
	}
	verb := rest[0]
	if verb == "outbox" || verb == "webhooks" || verb == "store" {
		if len(rest) < 2 {
			return args
		}
		return slices.Concat(rest[:2], flagArgs, rest[2:])
	}
	return slices.Concat(rest[:1], flagArgs, rest[1:])
}

// configDefault is the --config default: $MAILHOOK_CONFIG.
func configDefault() string { return os.Getenv("MAILHOOK_CONFIG") }

// configHint says what to type when the one argument of a verb that takes --config looks like
// the configuration file: `mailhook check mailhook.yaml`.
func configHint(fs *flag.FlagSet) string {
	f := fs.Lookup("config")
	if f == nil || f.Value.String() != "" || fs.NArg() != 1 {
		return ""
	}
	arg := fs.Arg(0)
	if !strings.HasSuffix(arg, ".yaml") && !strings.HasSuffix(arg, ".yml") {
		return ""
	}
	return fmt.Sprintf(": the configuration is a flag: mailhook %s --config %s", fs.Name(), arg)
}
