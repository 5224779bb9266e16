package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"text/template"
	"time"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/internal/demo"
	"github.com/mailhook/mailhook/watcher"
)

// demoSecret signs the demo's webhooks. It is a throwaway value, printed so users can verify.
const demoSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// demoConfig is the built-in configuration of `mailhook demo`: the same YAML a user writes, with
// the loopback addresses filled in. It goes through config.Load like any other file.
var demoConfig = template.Must(template.New("demo").Parse(`# mailhook demo configuration (generated)
state_dir: {{.StateDir}}
log: {level: info, format: text}
http: {listen: ""}
accounts:
  - name: demo
    imap:
      host: 127.0.0.1
      port: {{.IMAPPort}}
      security: plain                # loopback only
      username: {{.User}}
      password: {{.Password}}
      mailboxes: [INBOX]
      start: new
      idle_refresh: 2s               # short, so the in-memory server's IDLE race cannot stall the demo
      trusted_authserv_id: mx.google.com
webhooks:
  - name: receiver
    url: {{.WebhookURL}}
    secrets: ["{{.Secret}}"]
    body: text
rules:
  - name: ci-failures
    when: 'from.address endsWith "@github.com" && auth.dmarc == "pass" && subject contains "failed"'
    actions:
      - webhook: receiver
  - name: invoices
    when: 'subject matches "(?i)invoice" && any(attachments, .content_type == "application/pdf")'
    extract:                         # into the payload's "fields"
      number: 'find("[0-9]{4}-[0-9]+", subject)'
      amount: 'groups("Amount due: (?P<amount>[0-9.,]+)", text).amount'
    actions:
      - webhook: receiver
`))

// demoVerb runs the real pipeline against an in-process IMAP server and a local webhook
// receiver, appends sample mail and prints every delivery. With --once it exits after the
// samples have been delivered; otherwise it runs until interrupted, so a user can APPEND more.
func demoVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	once := fs.Bool("once", false, "exit after the sample messages have been delivered")
	timeout := fs.Duration("timeout", time.Minute, "with --once, give up after this long")
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	dir, err := os.MkdirTemp("", "mailhook-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "mailhook demo: %v\n", err)
		return exitFail
	}
	defer os.RemoveAll(dir)

	mem, err := demo.NewIMAPServer(demo.IMAPOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "mailhook demo: imap server: %v\n", err)
		return exitFail
	}
	defer mem.Close()

	stdout = &lockedWriter{w: stdout} // the receiver prints from its own goroutines
	delivered := make(chan struct{}, 16)
	var shown sync.Once
	recv, err := demo.NewReceiver(demo.ReceiverOptions{
		Secret: demoSecret,
		OnRequest: func(r demo.Request) {
			r.Summarize(stdout)
			shown.Do(func() { printPayload(stdout, r) })
			select {
			case delivered <- struct{}{}:
			default: // more than the samples: the user is appending; only --once counts
			}
		},
	})
	if err != nil {
		fmt.Fprintf(stderr, "mailhook demo: webhook receiver: %v\n", err)
		return exitFail
	}
	defer recv.Close()

	_, port, _ := net.SplitHostPort(mem.Addr())
	path := filepath.Join(dir, "demo.yaml")
	f, err := os.Create(path)
	if err == nil {
		err = demoConfig.Execute(f, map[string]string{
			"StateDir": filepath.Join(dir, "state"), "IMAPPort": port, "User": mem.User(), "Password": mem.Password(),
			"WebhookURL": recv.URL() + "/hook", "Secret": demoSecret,
		})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailhook demo: write config: %v\n", err)
		return exitFail
	}
	l, code := load(path, func(string) (string, bool) { return "", false }, stderr)
	if code != exitOK {
		return code
	}

	fmt.Fprintf(stdout, "mailhook demo\n  IMAP server  %s  user %s  password %s  (plain, loopback)\n  webhooks  →  %s/hook  secret %s\n  rules        ci-failures, invoices\n  config       %s\n  state        %s\n  (both removed when the demo stops; while it runs, from another terminal:\n     mailhook status --config %s\n     mailhook outbox list --config %s)\n\n",
		mem.Addr(), mem.User(), mem.Password(), recv.URL(), demoSecret, path, filepath.Join(dir, "state"), path, path)

	a, err := newApp(ctx, l, newLogger(config.LogConfig{Level: "warn", Format: "text"}, stderr))
	if err != nil {
		fmt.Fprintf(stderr, "mailhook demo: %v\n", err)
		return exitFail
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()

	// Append once the watcher has taken its `start: new` checkpoint, so the samples count as new.
	if err := waitWatching(runCtx, a, *timeout); err != nil {
		fmt.Fprintf(stderr, "mailhook demo: %v\n", err)
		return exitFail
	}
	now := time.Now()
	for i, k := range []demo.SampleKind{demo.CIFailure, demo.Invoice, demo.Personal} {
		raw := demo.Sample(i, demo.SampleOptions{Kind: k, Date: now, To: mem.User()})
		if _, err := mem.Append("INBOX", raw); err != nil {
			fmt.Fprintf(stderr, "mailhook demo: append: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(stdout, "appended %s sample to INBOX\n", k)
	}
	fmt.Fprintln(stdout, "the personal note matches no rule: ci-failures wants a GitHub sender with a DMARC pass and \"failed\" in the subject, invoices an invoice subject with a PDF attached; nothing is sent for it")
	const want = 2 // the CI failure and the invoice; the personal note matches nothing
	if !*once {
		fmt.Fprintf(stdout, "\nwaiting for mail; APPEND more with any IMAP client, for instance with curl:\n\n%s\nCtrl-C to stop\n", appendExample(mem.Addr(), mem.User(), mem.Password()))
		<-ctx.Done()
		cancel()
		code := exitCode(<-done)
		fmt.Fprintf(stdout, "\ndemo stopped; goodbye.\n%s", nextSteps)
		return code
	}
	deadline := time.After(*timeout)
	for got := 0; got < want; {
		select {
		case <-delivered:
			got++
		case err := <-done:
			fmt.Fprintf(stderr, "mailhook demo: pipeline stopped early: %v\n", err)
			return exitFail
		case <-deadline:
			fmt.Fprintf(stderr, "mailhook demo: only %d of %d deliveries after %s\n", got, want, *timeout)
			return exitFail
		case <-ctx.Done():
			return exitFail
		}
	}
	fmt.Fprintf(stdout, "\nall %d sample deliveries received; stopping\n%s", want, nextSteps)
	cancel()
	return exitCode(<-done)
}

// nextSteps ends the demo's output.
const nextSteps = `Next steps:
  1. write a config for your mailbox: README "Gmail quick start", every key in config.example.yaml
  2. try your rules on a saved message:   mailhook test --config mailhook.yaml message.eml
  3. check the servers and mailboxes:     mailhook check --online --config mailhook.yaml
  4. run it:                              mailhook run --config mailhook.yaml
`

// appendExample is a copy-paste way to APPEND a message the ci-failures rule matches: a shell
// here-document and curl's IMAP upload.
func appendExample(addr, user, password string) string {
	return fmt.Sprintf(`cat > ci.eml <<'EOF'
From: GitHub <noreply@github.com>
To: %[2]s
Subject: Run failed: main
Authentication-Results: mx.google.com; dmarc=pass header.from=github.com

The build failed.
EOF
curl --silent --user '%[2]s:%[3]s' --upload-file ci.eml 'imap://%[1]s/INBOX'
`, addr, user, password)
}

func exitCode(err error) int {
	if err != nil {
		return exitFail
	}
	return exitOK
}

// waitWatching waits until every watcher of a is idling or polling, that is, has selected its
// mailbox and recorded its starting checkpoint.
func waitWatching(ctx context.Context, a *app, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready := true
		for _, w := range a.watchers {
			if st := w.Status().State; st != watcher.StateIdle && st != watcher.StatePolling {
				ready = false
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the watcher did not reach IDLE within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// printPayload shows one delivery in full: its Standard Webhooks headers and JSON body.
func printPayload(w io.Writer, r demo.Request) {
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, r.Body, "    ", "  "); err != nil {
		pretty.Write(r.Body)
	}
	fmt.Fprintf(w, "  the first delivery in full:\n    webhook-id: %s\n    webhook-timestamp: %s\n    webhook-signature: %s\n    %s\n",
		r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), pretty.String())
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
