// Package config is mailhook's configuration file: its YAML schema (config.example.yaml documents
// every key), the defaults, ${NAME} references and *_file secrets, and validation. A configuration
// is built in the order Default → Parse → Validate:
//
//  1. Default gives the top-level defaults, so a key the file leaves out keeps its default and a
//     key the file sets to "" (http.listen: "" disables the HTTP server) stays "".
//  2. Load parses the file over it with viper and UnmarshalExact (unknown keys fail, nested ones
//     too), expands ${NAME} references from the environment and reads the *_file secrets.
//  3. ApplyDefaults fills in the defaults of list items (accounts, webhooks, replies), raises poll
//     intervals below the allowed minimum and returns warnings for the operator.
//  4. Validate reports every remaining problem at once, each a *FieldError naming its field path.
//
// Each section of the file has its own source file here holding its schema, its defaults (defined
// once: where a library has a default of its own, the one here is that library's exported
// constant) and its checks: state.go, log.go, http.go, accounts.go (imap.go, smtp.go, server.go,
// oauth2.go, limits.go), webhooks.go (formats.go), replies.go and rules.go.
//
// The package only describes and checks: it connects to nothing and does not compile the rules'
// when expressions (the rules package does; checking a webhook builds its formatter and its
// attachments_when filter once, so their mistakes are configuration errors). The callers convert a
// loaded Config into the config structs of the packages they construct; those packages never
// import this one. No error from this package ever contains a password, secret, header value or
// webhook URL.
package config

import (
	"os"
	"slices"
)

// Config is the whole configuration file.
type Config struct {
	StateDir string      `mapstructure:"state_dir"` // the state database and the attachment spool
	Store    StoreConfig `mapstructure:"store"`     // store.go
	Log      LogConfig   `mapstructure:"log"`
	HTTP     HTTPConfig  `mapstructure:"http"`
	Accounts []Account   `mapstructure:"accounts"`
	Webhooks []Webhook   `mapstructure:"webhooks"`
	Replies  []Reply     `mapstructure:"replies"`
	Rules    []Rule      `mapstructure:"rules"`
}

// Default returns a Config holding the top-level defaults. Load parses the file over it, so keys
// the file leaves out keep these values; list items get theirs from ApplyDefaults.
func Default() *Config {
	return &Config{
		StateDir: defaultStateDir,
		Log:      LogConfig{Level: defaultLogLevel, Format: defaultLogFormat},
		HTTP:     HTTPConfig{Listen: DefaultHTTPListen},
	}
}

// Options adjust Load; the zero value loads a configuration the way the daemon needs it. New
// needs (such as resolving only the secrets a verb uses) become fields here, so that Load's
// signature stays as it is.
type Options struct {
	// Getenv resolves ${NAME} references; nil means os.LookupEnv.
	Getenv func(name string) (string, bool)
	// NoSecrets is for the verbs that use no secret (status, outbox, webhooks list and enable,
	// healthcheck): run in an operator's shell, they lack the daemon's environment. An unset
	// ${NAME} outside state_dir, and a secret file (password_file, secret_file, value_file, …)
	// that cannot be read, then get a stand-in value that passes validation instead of failing
	// the load. The stand-ins are never used to connect or sign.
	NoSecrets bool
	// Webhook, with NoSecrets, names the one webhook whose secrets are still resolved as without
	// it (`webhooks test` signs with them and uses its URL and headers; the accounts' secrets and
	// the other webhooks' get stand-ins).
	Webhook string
}

// Load reads the YAML configuration at path and returns it with defaults applied and validated,
// and the warnings ApplyDefaults produced (each a line for the operator, free of secrets; the
// insecure settings among them are meant to be logged at startup). Every error it returns is a
// configuration error (the CLI exits with status 2). Apart from an unreadable or malformed file,
// problems are reported all at once, joined, one per line, each a *FieldError naming its field
// (errors.As finds them); the errors do not repeat the file's path.
//
// Parsing is strict: an unknown key, nested or not, is an error naming it. After YAML parsing,
// every string value has each ${NAME} (NAME of letters, digits and underscores, not starting with
// a digit) replaced by the variable's value; other uses of $ ($Label, $$, $NAME) are left as they
// are, and there is no way to write a literal "${" (put such a value in a *_file). Then
// password_file and secret_file are read (relative paths are relative to the working directory,
// like state_dir; one trailing newline is removed) and their contents are never expanded.
func Load(path string, opts Options) (*Config, []string, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.LookupEnv
	}
	cfg, err := parse(path)
	if err != nil {
		return nil, nil, err
	}
	if err := expandEnv(cfg, getenv, opts.standIns); err != nil {
		return nil, nil, err
	}
	if err := cfg.readFiles(opts.standIns); err != nil {
		return nil, nil, err
	}
	warnings := cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	for i := range cfg.Webhooks {
		w := &cfg.Webhooks[i]
		w.Secrets, w.Secret = w.SigningSecrets(), ""
	}
	return cfg, warnings, nil
}

// ApplyDefaults fills every unset field of every list item with its default (see
// config.example.yaml), spells every case of INBOX as "INBOX" (mailboxes, rule filters, move and
// copy targets), raises poll intervals below the minimum, and returns warnings for the
// operator: raised values, plaintext allowed by insecure: true, likely mistakes. It is idempotent.
// Load calls it; call it yourself on a Config built in code before Validate.
func (c *Config) ApplyDefaults() (warnings []string) {
	c.applyStateDefaults()
	c.applyStoreDefaults()
	c.Log.applyDefaults()
	// HTTP.Listen is left alone: "" means disabled, and Default holds its default.
	for i := range c.Accounts {
		c.Accounts[i].applyDefaults(ItemPath("accounts", i, c.Accounts[i].Name), &warnings)
	}
	for i := range c.Webhooks {
		c.Webhooks[i].applyDefaults(ItemPath("webhooks", i, c.Webhooks[i].Name), &warnings)
	}
	for i := range c.Replies {
		c.Replies[i].applyDefaults()
	}
	for i := range c.Rules {
		c.Rules[i].applyDefaults()
	}
	c.linkFields()
	return append(warnings, c.ruleWarnings()...)
}

// linkFields gives each webhook and reply the extract names of the rules that use it, so their
// templates are checked with .Fields as the rules fill it.
func (c *Config) linkFields() {
	webhooks, replies := map[string][]string{}, map[string][]string{}
	for _, r := range c.Rules {
		for name := range r.Extract {
			for _, a := range r.Actions {
				if a.Webhook != "" {
					webhooks[a.Webhook] = append(webhooks[a.Webhook], name)
				}
				if a.Reply != "" {
					replies[a.Reply] = append(replies[a.Reply], name)
				}
			}
		}
	}
	sorted := func(names []string) []string {
		slices.Sort(names)
		return slices.Compact(names)
	}
	for i := range c.Webhooks {
		c.Webhooks[i].Fields = sorted(webhooks[c.Webhooks[i].Name])
	}
	for i := range c.Replies {
		c.Replies[i].Fields = sorted(replies[c.Replies[i].Name])
	}
}

// Validate reports every problem in c, joined, each a *FieldError naming its field. It does no I/O
// and expects ApplyDefaults to have run. Rule expressions are only checked for presence here; the
// rules package compiles them.
func (c *Config) Validate() error {
	var p problems
	c.validateState(&p)
	c.validateStore(&p)
	c.Log.validate(&p)
	c.HTTP.validate(&p)

	if len(c.Accounts) == 0 {
		p.add("accounts", "at least one account is required")
	}
	accounts := uniqueNames(&p, "accounts", len(c.Accounts), func(i int) string { return c.Accounts[i].Name })
	webhooks := uniqueNames(&p, "webhooks", len(c.Webhooks), func(i int) string { return c.Webhooks[i].Name })
	replies := uniqueNames(&p, "replies", len(c.Replies), func(i int) string { return c.Replies[i].Name })
	uniqueNames(&p, "rules", len(c.Rules), func(i int) string { return c.Rules[i].Name })

	for i := range c.Accounts {
		c.Accounts[i].validate(&p, ItemPath("accounts", i, c.Accounts[i].Name))
	}
	for i := range c.Webhooks {
		c.Webhooks[i].validate(&p, ItemPath("webhooks", i, c.Webhooks[i].Name))
	}
	for i := range c.Replies {
		c.Replies[i].validate(&p, ItemPath("replies", i, c.Replies[i].Name))
	}
	names := ruleRefs{accounts: accounts, webhooks: webhooks, replies: replies}
	for i := range c.Rules {
		c.validateRule(&p, i, names)
	}
	return p.err()
}
