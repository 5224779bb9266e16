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
	fmt.Fprintf(stdout, "config %s: ok (%d accounts, %d webhooks, %d rules)\n", *path, len(l.cfg.Accounts), len(l.cfg.Webhooks), len(l.cfg.Rules))
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
		reads := r.Reads
		var what []string
		if reads.Text {
			what = append(what, "text")
		}
		if reads.HTML {
			what = append(what, "html")
		}
		cost := "the header section and BODYSTRUCTURE only: no body bytes"
		if len(what) > 0 {
			cost = "the header section, BODYSTRUCTURE and the " + strings.Join(what, " and ") + " part"
		}
		if len(what) == 0 {
			what = append(what, "headers and structure only")
		}
		if reads.AttachmentList {
			// Attachment content is never read by a rule: filename, type and size come with BODYSTRUCTURE.
			what = append(what, "the attachment list (no attachment bytes)")
		}
		fmt.Fprintf(stdout, "  rule %q reads %s; costs %s\n", r.Spec.Name, strings.Join(what, " + "), cost)
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
