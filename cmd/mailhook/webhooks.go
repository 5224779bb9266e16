package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/dispatch"
	"github.com/mailhook/mailhook/payload"
)

// This file is `mailhook webhooks`: the health of each webhook endpoint and re-enabling one that
// was disabled (HTTP 410, or failing for its disable_after period). Both work beside a running
// `mailhook run`: `enable` releases the held jobs in the store, and the daemon's workers deliver
// them within their 30 s re-check.

const webhooksUsage = `Usage:
  mailhook webhooks list   -c FILE [--json]   each webhook: enabled or disabled (since, why), failing since,
                                              and its pending, in-flight, held and dead jobs
  mailhook webhooks enable -c FILE NAME       re-enable a disabled webhook and release its held jobs
  mailhook webhooks test   -c FILE NAME       send a signed test event to webhook NAME, in its format;
                                              print the status and latency (exit 0 on 2xx)
  mailhook webhooks secret                    print a new whsec_ signing secret
`

// webhooksVerb runs `mailhook webhooks SUBVERB`.
func webhooksVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, webhooksUsage)
		return exitConfig
	}
	switch args[0] {
	case "list":
		return webhooksList(ctx, args[1:], stdout, stderr)
	case "enable":
		return webhooksEnable(ctx, args[1:], stdout, stderr)
	case "secret":
		return webhooksSecret(args[1:], stdout, stderr)
	case "test":
		return webhooksTest(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, webhooksUsage)
		return exitOK
	}
	fmt.Fprintf(stderr, "mailhook webhooks: unknown subcommand %q;%s want list, enable, test or secret\n", args[0],
		didYouMean(args[0], []string{"list", "enable", "test", "secret"}))
	return exitConfig
}

func webhooksList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("webhooks list", flag.ContinueOnError)
	path := configFlag(fs)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	l, st, code := openTool("webhooks list", *path, stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	reports, err := dispatch.Reports(ctx, st, webhookNames(l.cfg))
	if err != nil {
		fmt.Fprintf(stderr, "mailhook webhooks list: %v\n", err)
		return exitFail
	}
	if *asJSON {
		if reports == nil {
			reports = []dispatch.Report{}
		}
		return printJSON(stdout, stderr, reports)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WEBHOOK\tSTATE\tSINCE\tFAILING SINCE\tPENDING\tIN FLIGHT\tHELD\tDEAD\tREASON")
	for _, r := range reports {
		state, since, failing := "enabled", "-", "-"
		if !r.Enabled {
			state, since = "disabled", r.DisabledAt.Local().Format(time.RFC3339)
		}
		if !r.Configured {
			state += " (not configured)"
		}
		if r.FailingSince != nil {
			failing = r.FailingSince.Local().Format(time.RFC3339)
		}
		reason := r.Reason
		if reason == "" {
			reason = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", r.Name, state, since, failing,
			r.Pending, r.InFlight, r.Held, r.Dead, reason)
	}
	if err := tw.Flush(); err != nil {
		return exitFail
	}
	return exitOK
}

func webhooksEnable(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	path, name, ok := webhookArgs("enable", args, stderr)
	if !ok {
		return exitConfig
	}
	l, st, code := openTool("webhooks enable", path, stderr)
	if code != exitOK {
		return code
	}
	defer st.Close()
	before, err := st.Endpoint(ctx, name)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook webhooks enable: %v\n", err)
		return exitFail
	}
	configured := slices.ContainsFunc(l.cfg.Webhooks, func(w config.Webhook) bool { return w.Name == name })
	if !configured && !before.Disabled() {
		fmt.Fprintf(stderr, "mailhook webhooks enable: no webhook %q in the configuration or the state\n", name)
		return exitFail
	}
	released, err := st.EnableEndpoint(ctx, name, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "mailhook webhooks enable: %v\n", err)
		return exitFail
	}
	switch {
	case before.Disabled():
		fmt.Fprintf(stdout, "webhook %s enabled (was disabled since %s: %s); %d held jobs released\n",
			name, before.DisabledAt.Local().Format(time.RFC3339), before.Reason, released)
	default:
		fmt.Fprintf(stdout, "webhook %s was not disabled; %d held jobs released\n", name, released)
	}
	if !configured {
		fmt.Fprintf(stdout, "webhook %s is no longer configured: its jobs will be dead-lettered as webhook_removed\n", name)
	} else if released > 0 {
		fmt.Fprintf(stdout, "a running mailhook delivers them within %s\n", recheckHint)
	}
	return exitOK
}

// webhookNames returns the configured webhook names in configuration order.
func webhookNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Webhooks))
	for _, w := range cfg.Webhooks {
		names = append(names, w.Name)
	}
	return names
}

// webhooksSecret prints a new signing secret: whsec_ and the base64 of 32 random bytes, the form
// secrets: takes and Standard Webhooks libraries read.
func webhooksSecret(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("webhooks secret", flag.ContinueOnError)
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintf(stderr, "mailhook webhooks secret: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "whsec_%s\n", base64.StdEncoding.EncodeToString(key))
	return exitOK
}

// webhooksTest sends the test event (payload.TestEvent) to one webhook as a delivery would, signed,
// in its format, once; nothing is queued or recorded. Exit 0 on 2xx, 1 otherwise.
func webhooksTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	path, name, ok := webhookArgs("test", args, stderr)
	if !ok {
		return exitConfig
	}
	// It uses the secrets of that webhook only: not the accounts' nor the other webhooks'.
	l, code := loadWith(path, config.Options{NoSecrets: true, Webhook: name}, stderr)
	if code != exitOK {
		return code
	}
	f := l.formats[name]
	if f == nil {
		fmt.Fprintf(stderr, "mailhook webhooks test: no webhook %q in the configuration;%s\n", name,
			didYouMean(name, webhookNames(l.cfg)))
		return exitConfig
	}
	eps, err := l.cfg.Endpoints()
	var r dispatch.TestResult
	if d, e := dispatch.New(eps, dispatch.Options{Version: version()}); err == nil && e == nil {
		r, err = d.Test(ctx, name, f)
	} else {
		err = errors.Join(err, e)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailhook webhooks test: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "webhook %s: %s event %s (%s, %d bytes)\n", name, payload.TypeTest, r.ID, f.Format(), r.Bytes)
	if !r.OK() {
		fmt.Fprintf(stdout, "failed after %v: %s\n", r.Latency.Round(time.Millisecond), r.Error)
		return exitFail
	}
	fmt.Fprintf(stdout, "HTTP %d in %v\n", r.Status, r.Latency.Round(time.Millisecond))
	return exitOK
}

// webhookArgs parses the flags and the one webhook NAME of `webhooks SUB`; false after a usage error
// (printed).
func webhookArgs(sub string, args []string, stderr io.Writer) (path, name string, ok bool) {
	fs := flag.NewFlagSet("webhooks "+sub, flag.ContinueOnError)
	p := configFlag(fs)
	fs.SetOutput(stderr)
	names, ok := parseInterspersed(fs, args)
	if ok && len(names) != 1 {
		fmt.Fprintf(stderr, "mailhook webhooks %s: want one webhook NAME\n\n%s", sub, webhooksUsage)
		ok = false
	}
	if !ok {
		return "", "", false
	}
	return *p, names[0], true
}
