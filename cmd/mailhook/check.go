package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// checkVerb loads the configuration, compiles every rule and prints, per rule, which message
// fields it reads and so what it costs in IMAP bytes. Exit 0 when everything is valid, 2 otherwise.
func checkVerb(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	path := configFlag(fs)
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	l, code := load(*path, lookupEnv, stderr)
	if code != exitOK {
		return code
	}
	fmt.Fprintf(stdout, "config %s: ok (%d accounts, %d webhooks, %d rules)\n", *path, len(l.cfg.Accounts), len(l.cfg.Webhooks), len(l.cfg.Rules))
	for _, a := range l.cfg.Accounts {
		for _, mb := range a.IMAP.Mailboxes {
			fmt.Fprintf(stdout, "  %s/%s fetches %s\n", a.Name, mb, cost(plan(l, a.Name, mb)))
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
		if len(what) == 0 {
			what = append(what, "headers and structure only")
		}
		fmt.Fprintf(stdout, "  rule %q reads %s\n", r.Spec.Name, strings.Join(what, " + "))
	}
	return exitOK
}
