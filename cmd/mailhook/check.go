package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/emersion/go-sasl"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/pipeline"
	"github.com/mailhook/mailhook/watcher"
)

// checkVerb loads the configuration, compiles every rule and prints, per rule, which message
// fields it reads and so what it costs in IMAP bytes. Exit 0 when everything is valid, 2 otherwise.
//
// With --online it then connects to every server (online.go) and exits 1 when one check fails.
func checkVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := configFlag(fs)
	online := fs.Bool("online", false, "also log in to every IMAP and SMTP server, EXAMINE every mailbox and check every move/copy folder")
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	l, code := load(*path, os.LookupEnv, stderr)
	if code != exitOK {
		return code
	}
	fmt.Fprintf(stdout, "config %s: ok (%s, %s, %s)\n", *path, plural(len(l.cfg.Accounts), "account"),
		plural(len(l.cfg.Webhooks), "webhook"), plural(len(l.cfg.Rules), "rule"))
	p, err := pipeline.New(l.pipelineConfig(nil))
	if err != nil {
		fmt.Fprintf(stderr, "mailhook check: %v\n", err)
		return exitFail
	}
	for _, a := range l.cfg.Accounts {
		for _, mb := range a.IMAP.Mailboxes {
			fmt.Fprintf(stdout, "  %s/%s fetches %s\n", a.Name, mb, cost(p.Plan(a.Name, mb)))
		}
	}
	for _, r := range l.rules.Rules() {
		reads, what := r.Reads, ""
		for _, part := range []struct {
			on   bool
			what string
		}{{(reads.Text || reads.ReplyText) && reads.HTML, "the text and html parts"},
			{reads.ReplyText && !reads.HTML, "the text part (the html part of a message without one)"},
			{reads.Text && !reads.ReplyText && !reads.HTML, "the text part"},
			{reads.HTML && !reads.Text && !reads.ReplyText, "the html part"}, {reads.Reports, "report parts (bounce, complaint)"},
			{reads.Calendar, "the calendar part"}} {
			if part.on {
				what = strings.TrimPrefix(what+" + "+part.what, " + ")
			}
		}
		if what == "" {
			what = "headers and structure only (no body bytes)"
		}
		if reads.AttachmentList {
			// Attachment content is never read by a rule: filename, type and size come with BODYSTRUCTURE.
			what += " + the attachment list (no attachment bytes)"
		}
		fmt.Fprintf(stdout, "  rule %q reads %s\n", r.Spec.Name, what)
	}
	for _, w := range l.cfg.Lint() {
		fmt.Fprintf(stderr, "mailhook: warning: %s\n", w)
	}
	if err := config.CheckStateDir(l.cfg.StateDir); err != nil {
		fmt.Fprintf(stderr, "mailhook check: %v\n", err)
		return exitFail
	}
	if *online {
		quiet := slog.New(slog.DiscardHandler) // the report lines say everything
		return onlineCheck(ctx, l.cfg, func(a config.Account, mb string) (watcher.Config, error) {
			return watcherConfig(l, a, mb, quiet)
		}, func(a config.Account) (func(context.Context) (sasl.Client, error), error) {
			newClient, _, err := l.smtpSASL(a, quiet)
			return newClient, err
		}, stdout)
	}
	return exitOK
}

// plural writes "1 account", "2 accounts".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
