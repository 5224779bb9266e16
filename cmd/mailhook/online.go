package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/watcher"
)

// onlineTimeout bounds the checks of one account (IMAP and SMTP together).
const onlineTimeout = 60 * time.Second

// onlineCheck is `check --online`: for every account, in parallel, it logs in to the IMAP server as
// the watcher would, EXAMINEs every watched mailbox (read-only: nothing is fetched, no flag
// changes), confirms every folder a move: or copy: action of an applicable rule names, and, when
// smtp: is configured, connects and authenticates to the SMTP server without sending anything.
// It prints one line per check, in configuration order, then a summary, and returns exitOK when
// every check passed, exitFail otherwise. Lines carry names, addresses and server answers, never a
// password or token.
func onlineCheck(ctx context.Context, cfg *config.Config, wcfg func(config.Account, string) (watcher.Config, error),
	smtpAuth func(config.Account) (func(context.Context) (sasl.Client, error), error), stdout io.Writer) int {
	reports := make([][]checkLine, len(cfg.Accounts))
	var wg sync.WaitGroup
	for i, a := range cfg.Accounts {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, onlineTimeout)
			defer cancel()
			reports[i] = checkAccount(ctx, cfg, a, wcfg, smtpAuth)
		})
	}
	wg.Wait()
	total, failed := 0, 0
	fmt.Fprintln(stdout, "online:")
	for _, lines := range reports {
		for _, l := range lines {
			total++
			verdict := "ok"
			if l.err != nil {
				failed++
				verdict = "FAIL: " + l.err.Error()
			} else if l.note != "" {
				verdict += " (" + l.note + ")"
			}
			fmt.Fprintf(stdout, "  %-7s %s: %s\n", l.kind, l.what, verdict)
		}
	}
	fmt.Fprintf(stdout, "online: %d checks, %d failed\n", total, failed)
	if failed > 0 {
		return exitFail
	}
	return exitOK
}

// checkLine is one result line of onlineCheck.
type checkLine struct {
	kind string // imap | mailbox | folder | smtp
	what string // account or account/mailbox
	note string // detail of a success
	err  error
}

// checkAccount runs the IMAP and SMTP checks of one account.
func checkAccount(ctx context.Context, cfg *config.Config, a config.Account, wcfg func(config.Account, string) (watcher.Config, error),
	smtpAuth func(config.Account) (func(context.Context) (sasl.Client, error), error)) []checkLine {
	var lines []checkLine
	folders := actionFolders(cfg, a)
	mailboxes := a.IMAP.Mailboxes
	wc, err := wcfg(a, mailboxes[0])
	var rep watcher.ProbeReport
	if err == nil {
		rep, err = watcher.Probe(ctx, wc, mailboxes, folders)
	}
	login := checkLine{kind: "imap", what: a.Name, err: err}
	if err == nil {
		login.note = fmt.Sprintf("%s, logged in as %s", a.IMAP.Addr(), a.IMAP.Username)
		if !rep.Idle {
			login.note += ", no IDLE: polling every " + a.IMAP.PollInterval.String()
		}
		if !rep.MoveRemoves && hasMove(cfg, a) {
			login.note += ", warning: no MOVE or UIDPLUS: move: copies and leaves the original flagged \\Deleted"
		}
	}
	lines = append(lines, login)
	for _, mb := range rep.Mailboxes {
		l := checkLine{kind: "mailbox", what: a.Name + "/" + mb.Name, err: mb.Err}
		if mb.Err == nil {
			l.note = fmt.Sprintf("uidvalidity %d, %d messages", mb.UIDValidity, mb.Messages)
		}
		lines = append(lines, l)
	}
	for _, f := range rep.Folders {
		lines = append(lines, checkLine{kind: "folder", what: a.Name + "/" + f.Name, err: f.Err})
	}
	if a.SMTP.Configured() {
		l := checkLine{kind: "smtp", what: a.Name}
		if l.err = probeSMTP(ctx, a, smtpAuth); l.err == nil {
			l.note = a.SMTP.Addr()
			if a.SMTP.Username != "" || a.SMTP.OAuth2 != nil {
				l.note += ", authenticated"
			}
		}
		lines = append(lines, l)
	}
	return lines
}

// hasMove reports whether a rule that applies to account a has a move: action.
func hasMove(cfg *config.Config, a config.Account) bool {
	for _, r := range cfg.Rules {
		for _, ra := range cfg.RuleAccounts(r) {
			if ra.Name == a.Name && slices.ContainsFunc(r.Actions, func(act config.Action) bool { return act.Move != "" }) {
				return true
			}
		}
	}
	return false
}

// actionFolders returns the move: and copy: targets of the rules that apply to account a, in
// rule order, without repeats.
func actionFolders(cfg *config.Config, a config.Account) []string {
	var folders []string
	for _, r := range cfg.Rules {
		applies := false
		for _, ra := range cfg.RuleAccounts(r) {
			applies = applies || ra.Name == a.Name
		}
		if !applies {
			continue
		}
		for _, act := range r.Actions {
			for _, f := range []string{act.Move, act.Copy} {
				if f != "" && !slices.Contains(folders, f) {
					folders = append(folders, f)
				}
			}
		}
	}
	return folders
}

// probeSMTP connects to the account's SMTP server as the reply sender would, says EHLO and
// authenticates (PLAIN with a password, or the oauth2 SASL client), then QUITs. Nothing is sent.
func probeSMTP(ctx context.Context, a config.Account, smtpAuth func(config.Account) (func(context.Context) (sasl.Client, error), error)) error {
	sc := a.SMTP
	addr := sc.Addr()
	var tc *tls.Config
	if sc.Security != config.SecurityPlain {
		var err error
		if tc, err = sc.TLS.ClientConfig(sc.Host); err != nil {
			return fmt.Errorf("smtp.tls: %w", err)
		}
	}
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var c *smtp.Client
	switch sc.Security {
	case config.SecurityTLS:
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		c = smtp.NewClient(tlsConn)
	case config.SecurityStartTLS:
		if c, err = smtp.NewClientStartTLS(conn, tc); err != nil {
			return fmt.Errorf("starttls with %s: %w", addr, err)
		}
	default:
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	if err := c.Hello(host); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	var client sasl.Client
	var newClient func(context.Context) (sasl.Client, error)
	if smtpAuth != nil {
		if newClient, err = smtpAuth(a); err != nil {
			return fmt.Errorf("smtp.oauth2: %w", err)
		}
	}
	switch {
	case newClient != nil:
		if client, err = newClient(ctx); err != nil {
			return fmt.Errorf("oauth2 token: %w", err)
		}
	case sc.Username != "":
		if !c.SupportsAuth(sasl.Plain) {
			return errors.New("server offers no AUTH PLAIN on this connection")
		}
		client = sasl.NewPlainClient("", sc.Username, sc.Password)
	}
	if client != nil {
		if err := c.Auth(client); err != nil {
			return fmt.Errorf("authenticate as %q: %w", sc.Username, err)
		}
	}
	if err := c.Quit(); err != nil {
		return fmt.Errorf("quit: %w", err)
	}
	return nil
}
