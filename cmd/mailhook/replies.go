package main

// The replies: section: its templates compiled for the pipeline, and the SMTP sender of every
// account for the reply workers.

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/reply"
)

// compileReplies parses every reply's templates once, at load time. Errors name the field:
// `replies[0] "ack".subject: …`.
func compileReplies(cfg *config.Config) (map[string]*reply.Template, error) {
	out := make(map[string]*reply.Template, len(cfg.Replies))
	var errs []error
	for i, r := range cfg.Replies {
		tpl, err := reply.ParseTemplate(r.Name, r.Subject, r.Body, r.HTML, r.Fields)
		if err != nil {
			path := config.ItemPath("replies", i, r.Name)
			for _, e := range unjoin(err) {
				var te *reply.TemplateError
				if errors.As(e, &te) {
					errs = append(errs, &config.FieldError{Field: path + "." + te.Field, Problem: te.Err.Error()})
				} else {
					errs = append(errs, fmt.Errorf("%s: %w", path, e))
				}
			}
			continue
		}
		out[r.Name] = tpl
	}
	return out, errors.Join(errs...)
}

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// replyAccounts builds the SMTP sender of every account that has an smtp section.
func replyAccounts(l *loaded, logger *slog.Logger) ([]reply.Account, error) {
	var out []reply.Account
	for _, a := range l.cfg.Accounts {
		s := a.SMTP
		if !s.Configured() {
			continue
		}
		sc := reply.SMTPConfig{Addr: s.Addr(), Security: s.Security, HelloName: s.HelloName,
			Username: s.Username, Password: s.Password, Timeout: s.Timeout}
		if s.Security != config.SecurityPlain {
			tc, err := s.TLS.ClientConfig(s.Host)
			if err != nil {
				return nil, fmt.Errorf("accounts %q smtp.tls: %w", a.Name, err)
			}
			sc.TLS = tc
		}
		auth, authFailed, err := l.smtpSASL(a, logger)
		if err != nil {
			return nil, err
		}
		if auth != nil {
			sc.Auth, sc.OnAuthFailure, sc.Password = auth, authFailed, ""
		}
		sender, err := reply.NewSMTPSender(sc)
		if err != nil {
			return nil, fmt.Errorf("accounts %q smtp: %w", a.Name, err)
		}
		out = append(out, reply.Account{Name: a.Name, Sender: sender, PerDay: a.Limits.RepliesPerDay})
	}
	return out, nil
}
