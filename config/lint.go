package config

// Warnings for `mailhook check`: settings that load and validate but are likely not what the
// operator meant, and a state directory that `mailhook run` could not create.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// unexpandedRE matches a value that is a shell-style variable reference mailhook does not
// expand: $NAME or $(command).
var unexpandedRE = regexp.MustCompile(`^\$([A-Za-z_][A-Za-z0-9_]*|\(.*\))$`)

// readsAuthRE finds a rule expression that reads the auth verdicts.
var readsAuthRE = regexp.MustCompile(`\bauth\.(spf|dkim|dmarc)\b`)

// Lint returns the warnings `mailhook check` prints for a loaded configuration: a relative
// state_dir, a secret that looks like an unexpanded variable, and a rule reading auth.* on an
// account without trusted_authserv_id (where auth.* is never "pass"). Warnings name fields and
// variables, never a secret's value.
func (c *Config) Lint() []string {
	var w []string
	if !filepath.IsAbs(c.StateDir) {
		w = append(w, fmt.Sprintf("state_dir %q is relative: it is resolved against the working directory of each command, so run and the operator verbs must start in the same directory; an absolute path avoids that", c.StateDir))
	}
	secret := func(field, value string) {
		if m := unexpandedRE.FindStringSubmatch(value); m != nil {
			hint := "write ${NAME}"
			if m[1][0] != '(' {
				hint = "write ${" + m[1] + "}"
			}
			w = append(w, fmt.Sprintf("%s looks like an unexpanded variable (%s): only ${NAME} is expanded, so it is used literally; %s", field, value, hint))
		}
	}
	for i, a := range c.Accounts {
		path := ItemPath("accounts", i, a.Name)
		secret(path+".imap.password", a.IMAP.Password)
		secret(path+".smtp.password", a.SMTP.Password)
		for _, o := range []struct {
			path string
			cfg  *OAuth2Config
		}{{path + ".imap.oauth2", a.IMAP.OAuth2}, {path + ".smtp.oauth2", a.SMTP.OAuth2}} {
			if o.cfg != nil {
				secret(o.path+".client_secret", o.cfg.ClientSecret)
				secret(o.path+".refresh_token", o.cfg.RefreshToken)
			}
		}
	}
	for i, wh := range c.Webhooks {
		path := ItemPath("webhooks", i, wh.Name)
		secret(path+".url", wh.URL)
		for j, s := range wh.Secrets {
			secret(fmt.Sprintf("%s.secrets[%d]", path, j), s)
		}
		for j, h := range wh.Headers {
			secret(fmt.Sprintf("%s.headers[%d].value", path, j), h.Value)
		}
	}
	for i, r := range c.Rules {
		if !readsAuthRE.MatchString(r.When) {
			continue
		}
		for j, a := range c.Accounts {
			if (r.Account == "" || r.Account == a.Name) && a.IMAP.TrustedAuthservID == "" {
				w = append(w, fmt.Sprintf("%s reads auth.* but account %q has no trusted_authserv_id, so auth.* is never \"pass\" there and the rule cannot match its mail: set %s.imap.trusted_authserv_id to the authserv-id of your provider's Authentication-Results header (the first word after the colon)",
					ItemPath("rules", i, r.Name), a.Name, ItemPath("accounts", j, a.Name)))
			}
		}
	}
	return w
}

// CheckStateDir reports whether mailhook run could use dir as its state directory: dir is a
// writable directory, or the nearest existing ancestor is one (run creates the rest). It writes
// nothing.
func CheckStateDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("state_dir %q: %w", dir, err)
	}
	for p := abs; ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) && p != filepath.Dir(p) {
			continue
		}
		if err != nil {
			return fmt.Errorf("state_dir %s: %w", abs, err)
		}
		if !info.IsDir() {
			return fmt.Errorf("state_dir %s: %s is not a directory", abs, p)
		}
		if err := writable(p); err != nil {
			if p == abs {
				return fmt.Errorf("state_dir %s is not writable by this user: %w", abs, err)
			}
			return fmt.Errorf("state_dir %s does not exist and cannot be created: %s is not writable by this user: %w", abs, p, err)
		}
		return nil
	}
}
