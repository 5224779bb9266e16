package main

// This file is mailhook's configuration: the YAML schema (config.example.yaml documents every key),
// loading it strictly, and checking it. A configuration is built in the order Default → Parse →
// Validate:
//
//  1. DefaultConfig gives the top-level defaults, so a key the file leaves out keeps its default and
//     a key the file sets to "" (http.listen: "" disables the HTTP server) stays "".
//  2. LoadConfig parses the file over it with viper and UnmarshalExact (unknown keys fail, nested ones
//     too), expands ${NAME} references from the environment and reads the *_file secrets.
//  3. ApplyDefaults fills in the defaults of list items (accounts, webhooks, replies), raises poll
//     intervals below the allowed minimum and returns warnings for the operator.
//  4. Validate reports every remaining problem at once, each naming its field path.
//
// No error from this file ever contains a password, secret, header value or webhook URL.

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	netmail "net/mail"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/mailhook/mailhook/dispatch"
)

// Config is the whole configuration file.
type Config struct {
	StateDir string     `mapstructure:"state_dir"` // SQLite database and attachment spool
	Log      LogConfig  `mapstructure:"log"`
	HTTP     HTTPConfig `mapstructure:"http"`
	Accounts []Account  `mapstructure:"accounts"`
	Webhooks []Webhook  `mapstructure:"webhooks"`
	Replies  []Reply    `mapstructure:"replies"`
	Rules    []Rule     `mapstructure:"rules"`
}

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string `mapstructure:"level"`  // debug | info | warn | error
	Format string `mapstructure:"format"` // text | json
}

// HTTPConfig is the operations listener (/healthz, /readyz, /metrics).
type HTTPConfig struct {
	Listen string `mapstructure:"listen"` // host:port; "" disables the listener
}

// Account is one mail account: the IMAP mailboxes to watch and, for reply actions, its SMTP server.
type Account struct {
	Name   string     `mapstructure:"name"`
	IMAP   IMAPConfig `mapstructure:"imap"`
	SMTP   SMTPConfig `mapstructure:"smtp"`
	Limits Limits     `mapstructure:"limits"`
}

// IMAPConfig is how an account's mailboxes are reached and watched.
type IMAPConfig struct {
	Host     string    `mapstructure:"host"`
	Port     int       `mapstructure:"port"`     // default 993 for tls, 143 otherwise
	Security string    `mapstructure:"security"` // SecurityTLS | SecurityStartTLS | SecurityPlain
	TLS      TLSConfig `mapstructure:"tls"`
	// Insecure allows security: plain to a host that is not loopback. It never disables certificate
	// verification: a private CA goes in tls.ca_file.
	Insecure     bool   `mapstructure:"insecure"`
	Username     string `mapstructure:"username"`
	Password     string `mapstructure:"password"`
	PasswordFile string `mapstructure:"password_file"` // read into Password by LoadConfig
	// OAuth2 signs in with XOAUTH2 (or OAUTHBEARER) instead of a password; see OAuth2Config.
	OAuth2 *OAuth2Config `mapstructure:"oauth2"`
	// Mailboxes to watch, one IMAP session each. Default [INBOX].
	Mailboxes []string `mapstructure:"mailboxes"`
	// Start says what to do on the first run of a mailbox: StartNew (the default) processes only
	// mail that arrives from now on, StartAll backfills everything, a date (2006-01-02) backfills
	// mail received since that day.
	Start        string        `mapstructure:"start"`
	IdleRefresh  time.Duration `mapstructure:"idle_refresh"`  // re-issue IDLE this often; 1s–25m, default 10m
	PollInterval time.Duration `mapstructure:"poll_interval"` // NOOP poll without IDLE; ≥ 30s (≥ 10m for Gmail)
	// CommandTimeout is how long a command may go without a byte from the server before the
	// connection is closed (go-imap has no read deadlines). Default 2m, allowed 1s–10m.
	CommandTimeout time.Duration `mapstructure:"command_timeout"`
	// TrustedAuthservID is the authserv-id (RFC 8601) whose Authentication-Results header is
	// believed. Default "mx.google.com" for Gmail; for other hosts the default is "", which trusts
	// no Authentication-Results header at all (auth.* reads "none"): only the operator knows which
	// receiving MTA strips forged copies of its own header, so it must be named explicitly.
	TrustedAuthservID string  `mapstructure:"trusted_authserv_id"`
	Backoff           Backoff `mapstructure:"backoff"`
}

// TLSConfig adjusts certificate verification for a server.
type TLSConfig struct {
	CAFile     string `mapstructure:"ca_file"`     // PEM bundle that replaces the system roots; "" = system roots
	ServerName string `mapstructure:"server_name"` // name to verify; "" = the host
}

// Backoff is the reconnect schedule of an account's IMAP sessions (full jitter between Min and Max).
type Backoff struct {
	Min      time.Duration `mapstructure:"min"`       // default 1s
	Max      time.Duration `mapstructure:"max"`       // default 5m
	AuthMin  time.Duration `mapstructure:"auth_min"`  // after AUTHENTICATIONFAILED or [ALERT]; default 1m
	QuotaMin time.Duration `mapstructure:"quota_min"` // after an over-quota refusal; default 1h
}

// SMTPConfig is the server reply actions send through. It is optional: an account without
// smtp.host cannot be the target of a reply action.
type SMTPConfig struct {
	Host         string    `mapstructure:"host"`
	Port         int       `mapstructure:"port"`     // default 465 for tls, 587 for starttls, 25 for plain
	Security     string    `mapstructure:"security"` // SecurityTLS | SecurityStartTLS | SecurityPlain
	TLS          TLSConfig `mapstructure:"tls"`
	Insecure     bool      `mapstructure:"insecure"` // allows plain to a non-loopback host
	Username     string    `mapstructure:"username"`
	Password     string    `mapstructure:"password"`
	PasswordFile string    `mapstructure:"password_file"` // read into Password by LoadConfig
	// OAuth2 signs in with XOAUTH2 instead of a password. When it equals imap.oauth2, both share
	// one token (and one rotation state).
	OAuth2 *OAuth2Config `mapstructure:"oauth2"`
	From   string        `mapstructure:"from"` // header From; default the username
	// EnvelopeFrom is the SMTP MAIL FROM. "" is the null sender <> that RFC 3834 §3.3 recommends;
	// Gmail binds the envelope sender to the account, so set the account address there.
	EnvelopeFrom string `mapstructure:"envelope_from"`
	// HelloName is the EHLO name (RFC 5321 §4.1.1.1); default the domain of From.
	HelloName string `mapstructure:"hello_name"`
	// Timeout bounds the connection and each SMTP command; default 30s, allowed 1s–5m.
	Timeout time.Duration `mapstructure:"timeout"`
}

// OAuth2Config is how an account signs in with OAuth 2.0 bearer tokens (Gmail, Microsoft 365).
// mailhook refreshes the access token itself; the refresh token comes from `mailhook auth`.
type OAuth2Config struct {
	Provider         string `mapstructure:"provider"` // google | microsoft | custom
	ClientID         string `mapstructure:"client_id"`
	ClientSecret     string `mapstructure:"client_secret"`
	ClientSecretFile string `mapstructure:"client_secret_file"` // read into ClientSecret by LoadConfig
	RefreshToken     string `mapstructure:"refresh_token"`
	// RefreshTokenFile is read into RefreshToken by LoadConfig, and read again after the provider
	// refused the token (invalid_grant), so re-running `mailhook auth --out FILE` recovers.
	RefreshTokenFile string `mapstructure:"refresh_token_file"`
	// TokenURL is the token endpoint; required for custom, not allowed otherwise.
	TokenURL string `mapstructure:"token_url"`
	// Scopes the refresh token was granted, used by interactive flows; required for custom,
	// default the provider's mail scopes.
	Scopes []string `mapstructure:"scopes"`
	// Tenant is the Microsoft Entra tenant (ID or domain) of a single-tenant app; default common.
	Tenant string `mapstructure:"tenant"`
	// Mechanism is the SASL mechanism: xoauth2 (default; Gmail, Microsoft 365, Dovecot) or
	// oauthbearer (RFC 7628).
	Mechanism string `mapstructure:"mechanism"`
}

// Values of oauth2.provider and oauth2.mechanism.
const (
	ProviderGoogle    = "google"
	ProviderMicrosoft = "microsoft"
	ProviderCustom    = "custom"

	MechanismXOAuth2     = "xoauth2"
	MechanismOAuthBearer = "oauthbearer"
)

// Configured reports whether the account has an SMTP server for reply actions.
func (s SMTPConfig) Configured() bool { return s.Host != "" }

// Limits bound what one account may cost.
type Limits struct {
	DownloadPerDay ByteSize `mapstructure:"download_per_day"` // rolling 24 h; default 2000MB (Gmail allows 2500MB)
	MaxMessageSize ByteSize `mapstructure:"max_message_size"` // larger messages are never fetched in full; default 25MB
	MaxConnections int      `mapstructure:"max_connections"`  // IMAP connections; default 4
	RepliesPerDay  int      `mapstructure:"replies_per_day"`  // rolling 24 h; default 400
}

// Webhook is one HTTP endpoint that receives signed Standard Webhooks deliveries.
type Webhook struct {
	Name string `mapstructure:"name"`
	URL  string `mapstructure:"url"` // http(s); plain http to a non-loopback host needs Insecure
	// Secret, Secrets and SecretFile are mutually exclusive ways to give the whsec_ signing
	// secret(s). After LoadConfig, Secrets holds them all (secret and secret_file are folded into
	// it and Secret is ""); on a Config built in code, SigningSecrets reads either form.
	Secret          string        `mapstructure:"secret"`
	Secrets         []string      `mapstructure:"secrets"`
	SecretFile      string        `mapstructure:"secret_file"`
	Headers         []Header      `mapstructure:"headers"`
	Format          string        `mapstructure:"format"`           // json | slack | discord | teams | github | template; default json
	Body            string        `mapstructure:"body"`             // none | text | html | both; default text
	MaxBodyBytes    ByteSize      `mapstructure:"max_body_bytes"`   // per body part; default 256KiB
	Attachments     string        `mapstructure:"attachments"`      // none | metadata | inline; default metadata
	AttachmentsWhen string        `mapstructure:"attachments_when"` // with inline: which ones (expr over filename, content_type, size)
	MaxInlineBytes  ByteSize      `mapstructure:"max_inline_bytes"` // with inline: per message; default 10MB
	Timeout         time.Duration `mapstructure:"timeout"`          // per attempt; default 15s, at most 30s
	Retry           RetryConfig   `mapstructure:"retry"`
	// Insecure allows a plain http URL to a host that is not loopback (REQUIREMENTS D84).
	Insecure bool `mapstructure:"insecure"`
	// AllowLinkLocal allows the URL to resolve to link-local or cloud-metadata addresses, which
	// are refused at dial time otherwise (REQUIREMENTS D83).
	AllowLinkLocal bool `mapstructure:"allow_link_local"`
	Concurrency    int  `mapstructure:"concurrency"` // deliveries in flight at once; default 4
	// Template is the Go text/template of format: template (or TemplateFile, read into it by
	// LoadConfig); ContentType its Content-Type (default application/json, which requires the
	// output to be valid JSON). EventType is the repository_dispatch event_type of format: github
	// (default the rule's name). See formats.go.
	Template     string `mapstructure:"template"`
	TemplateFile string `mapstructure:"template_file"`
	ContentType  string `mapstructure:"content_type"`
	EventType    string `mapstructure:"event_type"`
	// DisableAfter disables the endpoint (its jobs are held) once it has failed without a single
	// success for this long (REQUIREMENTS D87); default 120h. HTTP 410 disables it at once.
	DisableAfter time.Duration `mapstructure:"disable_after"`
}

// SigningSecrets returns the whsec_ secrets to sign with, in order: Secrets, or Secret alone.
func (w *Webhook) SigningSecrets() []string {
	if len(w.Secrets) > 0 {
		return w.Secrets
	}
	if w.Secret != "" {
		return []string{w.Secret}
	}
	return nil
}

// Header is one extra request header sent with every delivery of a webhook. Its value is never
// logged; ValueFile (read into Value by LoadConfig, never expanded) keeps a token out of the file.
type Header struct {
	Name      string `mapstructure:"name"`
	Value     string `mapstructure:"value"`
	ValueFile string `mapstructure:"value_file"`
}

// RetryConfig is a webhook's retry schedule: exponential backoff with jitter between MinBackoff and
// MaxBackoff until the job is MaxAge old, then dead-lettered.
type RetryConfig struct {
	MaxAge     time.Duration `mapstructure:"max_age"`     // default 72h
	MinBackoff time.Duration `mapstructure:"min_backoff"` // default 5s
	MaxBackoff time.Duration `mapstructure:"max_backoff"` // default 1h
}

// Reply is an auto-reply template (sent through the account's SMTP server).
type Reply struct {
	Name    string        `mapstructure:"name"`
	Subject string        `mapstructure:"subject"`  // text/template over the message
	Body    string        `mapstructure:"body"`     // text/template over the message
	OncePer time.Duration `mapstructure:"once_per"` // one reply per (account, sender, reply); default 168h, ≥ 24h
	// OwnAddresses are the addresses that count as "us" (RFC 3834 §2); empty means the account's
	// username and smtp.from, which the caller fills in per account. smtp.from always counts.
	OwnAddresses []string `mapstructure:"own_addresses"`
	// HTML is an optional text/template for an HTML alternative of the body.
	HTML string `mapstructure:"html"`
	// Suppress adds sender patterns ('*' wildcards, case-insensitive, whole address) to the
	// built-in ones never answered: MAILER-DAEMON*, LISTSERV*, majordomo*, *-request@*, owner-*.
	Suppress []string `mapstructure:"suppress"`
	// MaxReceived: a message with more Received headers is never answered (a loop); default 30.
	MaxReceived int `mapstructure:"max_received"`
}

// Rule runs its actions for every message its When expression matches.
type Rule struct {
	Name    string   `mapstructure:"name"`
	Account string   `mapstructure:"account"` // optional filter: an account name
	Mailbox string   `mapstructure:"mailbox"` // optional filter: a watched mailbox
	When    string   `mapstructure:"when"`    // expr-lang expression (compiled by the rules package)
	Actions []Action `mapstructure:"actions"`
	Stop    bool     `mapstructure:"stop"` // no later rule runs when this one matched
}

// Action is one action of a rule; exactly one field is set (see Kind).
type Action struct {
	Webhook  string   `mapstructure:"webhook"`   // webhook name
	Reply    string   `mapstructure:"reply"`     // reply name
	MarkSeen bool     `mapstructure:"mark_seen"` // set \Seen
	Flag     []string `mapstructure:"flag"`      // flags or keywords to set, e.g. \Flagged, $Label
	Move     string   `mapstructure:"move"`      // mailbox to move the message to
	Copy     string   `mapstructure:"copy"`      // mailbox to copy the message to
}

// Action kinds, as returned by Action.Kind.
const (
	ActionWebhook  = "webhook"
	ActionReply    = "reply"
	ActionMarkSeen = "mark_seen"
	ActionFlag     = "flag"
	ActionMove     = "move"
	ActionCopy     = "copy"
)

// Kind returns which action a is (one of the Action* constants), or "" when no field or more than
// one field is set (Validate refuses both).
func (a Action) Kind() string {
	kinds := a.kinds()
	if len(kinds) != 1 {
		return ""
	}
	return kinds[0]
}

func (a Action) kinds() []string {
	var k []string
	if a.Webhook != "" {
		k = append(k, ActionWebhook)
	}
	if a.Reply != "" {
		k = append(k, ActionReply)
	}
	if a.MarkSeen {
		k = append(k, ActionMarkSeen)
	}
	if len(a.Flag) > 0 {
		k = append(k, ActionFlag)
	}
	if a.Move != "" {
		k = append(k, ActionMove)
	}
	if a.Copy != "" {
		k = append(k, ActionCopy)
	}
	return k
}

// Connection security values for imap.security and smtp.security.
const (
	SecurityTLS      = "tls"      // implicit TLS from the first byte
	SecurityStartTLS = "starttls" // plaintext, upgraded with STARTTLS before authenticating
	SecurityPlain    = "plain"    // no TLS: loopback only, unless insecure: true
)

// Values of imap.start other than a date.
const (
	StartNew = "new"
	StartAll = "all"
)

// Values of webhooks[].format, body and attachments.
const (
	FormatJSON = "json"

	BodyNone = "none"
	BodyText = "text"
	BodyHTML = "html"
	BodyBoth = "both"

	AttachmentsNone     = "none"
	AttachmentsMetadata = "metadata"
	AttachmentsInline   = "inline"
)

// Defaults and bounds (DESIGN.md "Config").
const (
	defaultStateDir   = "./mailhook-state"
	defaultLogLevel   = "info"
	defaultLogFormat  = "text"
	defaultHTTPListen = "127.0.0.1:9090"

	defaultMailbox        = "INBOX"
	defaultIdleRefresh    = 10 * time.Minute
	minIdleRefresh        = time.Second
	maxIdleRefresh        = 25 * time.Minute // REQUIREMENTS A8; RFC 2177 §3: re-issue before 29 min
	defaultPollInterval   = 10 * time.Minute
	minPollInterval       = 30 * time.Second
	minGmailPollInterval  = 10 * time.Minute
	defaultCommandTimeout = 2 * time.Minute
	minCommandTimeout     = time.Second
	maxCommandTimeout     = 10 * time.Minute
	gmailAuthservID       = "mx.google.com"
	gmailMaxConnections   = 15 // Gmail allows about 15 IMAP connections per account, all clients together
	defaultBackoffMin     = time.Second
	defaultBackoffMax     = 5 * time.Minute
	defaultBackoffAuthMin = time.Minute
	defaultBackoffQuota   = time.Hour

	defaultDownloadPerDay = 2000 * MB
	defaultMaxMessageSize = 25 * MB
	defaultMaxConnections = 4
	defaultRepliesPerDay  = 400

	defaultWebhookBody        = BodyText
	defaultWebhookAttachments = AttachmentsMetadata
	defaultMaxBodyBytes       = 256 * KiB
	defaultMaxInlineBytes     = 10 * MB
	defaultWebhookTimeout     = 15 * time.Second
	maxWebhookTimeout         = 30 * time.Second // REQUIREMENTS D77
	defaultRetryMaxAge        = 72 * time.Hour
	defaultRetryMinBackoff    = 5 * time.Second
	defaultRetryMaxBackoff    = time.Hour
	defaultConcurrency        = 4
	maxConcurrency            = 64

	defaultOncePer     = 7 * 24 * time.Hour
	defaultMaxReceived = 30 // REQUIREMENTS C62
	defaultSMTPTimeout = 30 * time.Second
	minSMTPTimeout     = time.Second
	maxSMTPTimeout     = 5 * time.Minute
	minOncePer         = 24 * time.Hour // REQUIREMENTS B52

	maxSecretFileSize = 64 << 10
)

// DefaultConfig returns a Config holding the top-level defaults. LoadConfig parses the file over
// it, so keys the file leaves out keep these values; list items get theirs from ApplyDefaults.
func DefaultConfig() *Config {
	return &Config{
		StateDir: defaultStateDir,
		Log:      LogConfig{Level: defaultLogLevel, Format: defaultLogFormat},
		HTTP:     HTTPConfig{Listen: defaultHTTPListen},
	}
}

// LoadConfig reads the YAML configuration at path and returns it with defaults applied and
// validated, and the warnings ApplyDefaults produced (each a line for the operator, free of
// secrets; REQUIREMENTS D84 wants the insecure ones logged at startup). getenv resolves ${NAME}
// references (os.LookupEnv when nil). Every error it returns is a configuration error (the CLI
// exits with status 2). Apart from an unreadable or malformed file, problems are reported all at
// once, joined, one per line, each a *FieldError naming its field (errors.As finds them); the
// errors do not repeat the file's path.
//
// Parsing is strict: an unknown key, nested or not, is an error naming it. After YAML parsing,
// every string value has each ${NAME} (NAME of letters, digits and underscores, not starting with
// a digit) replaced by the variable's value; other uses of $ ($Label, $$, $NAME) are left as they
// are, and there is no way to write a literal "${" (put such a value in a *_file). Then
// password_file and secret_file are read (relative paths are relative to the working directory,
// like state_dir; one trailing newline is removed) and their contents are never expanded.
func LoadConfig(path string, getenv func(string) (string, bool)) (*Config, []string, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	cfg := DefaultConfig()

	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml") // whatever the file's extension
	if err := v.ReadInConfig(); err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	if err := v.UnmarshalExact(cfg, viper.DecodeHook(configDecodeHook())); err != nil {
		return nil, nil, decodeProblems(err)
	}
	if err := expandEnv(cfg, getenv); err != nil {
		return nil, nil, err
	}
	if err := cfg.readFiles(); err != nil {
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

// FieldError is one problem with one configuration field.
type FieldError struct {
	Field   string // path such as `accounts[0] "personal".imap.port` or `http.listen`
	Problem string // what is wrong; never contains a secret
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// problems collects FieldErrors.
type problems []error

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
}

func (p problems) err() error { return errors.Join(p...) }

// itemPath names the i-th item of a list, with its name when it has one: `webhooks[1] "ci"`.
func itemPath(list string, i int, name string) string {
	if name == "" {
		return fmt.Sprintf("%s[%d]", list, i)
	}
	return fmt.Sprintf("%s[%d] %q", list, i, name)
}

// decodeProblems turns mapstructure's decoding errors into FieldErrors, one per unknown key.
func decodeProblems(err error) error {
	var p problems
	var visit func(error)
	visit = func(e error) {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) && e == error(de) {
			problem := de.Unwrap().Error()
			if keys, ok := strings.CutPrefix(problem, "has invalid keys: "); ok {
				for _, k := range strings.Split(keys, ", ") {
					field := k
					if de.Name() != "" {
						field = de.Name() + "." + k
					}
					p.add(field, "unknown key")
				}
				return
			}
			field := de.Name()
			if field == "" {
				field = "(top level)"
			}
			p.add(field, "%s", problem)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				visit(e)
			}
		case interface{ Unwrap() error }:
			visit(u.Unwrap())
		default:
			p = append(p, e)
		}
	}
	visit(err)
	return p.err()
}

// configDecodeHook converts YAML scalars into the Config's field types.
func configDecodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		byteSizeHook,
		durationNeedsUnitHook,
		mapstructure.StringToTimeDurationHookFunc(),
		stringToOneElementSliceHook,
		timestampToStringHook,
	)
}

var (
	byteSizeType = reflect.TypeFor[ByteSize]()
	durationType = reflect.TypeFor[time.Duration]()
)

// byteSizeHook decodes "25MB", "256KiB" or a plain number of bytes into a ByteSize.
func byteSizeHook(_, to reflect.Type, data any) (any, error) {
	if to != byteSizeType {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		return ParseByteSize(v)
	case int:
		return byteSizeFromInt(int64(v))
	case int64:
		return byteSizeFromInt(v)
	case uint64:
		if v > 1<<63-1 {
			return nil, errors.New("byte size too large")
		}
		return byteSizeFromInt(int64(v))
	case float64:
		if v < 0 || v >= 1<<63 {
			return nil, fmt.Errorf("byte size %v is out of range", v)
		}
		if v != float64(int64(v)) {
			return nil, fmt.Errorf("byte size %v is not a whole number of bytes", v)
		}
		return byteSizeFromInt(int64(v))
	}
	return data, nil
}

func byteSizeFromInt(n int64) (ByteSize, error) {
	if n < 0 {
		return 0, fmt.Errorf("byte size %d is negative", n)
	}
	return ByteSize(n), nil
}

// durationNeedsUnitHook refuses a bare number for a duration: mapstructure would read `timeout: 15`
// as 15 nanoseconds. Zero stays allowed (it means "the default").
func durationNeedsUnitHook(_, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	switch data.(type) {
	case int, int64, uint64, float64:
		if reflect.ValueOf(data).IsZero() {
			return time.Duration(0), nil
		}
		return nil, fmt.Errorf("duration %v has no unit: write it like 90s, 10m or 72h", data)
	}
	return data, nil
}

// timestampToStringHook turns a YAML timestamp back into text: the YAML parser reads an unquoted
// `start: 2026-01-01` as a time.Time, but every field that holds a date is a string.
func timestampToStringHook(_, to reflect.Type, data any) (any, error) {
	t, ok := data.(time.Time)
	if !ok || to.Kind() != reflect.String {
		return data, nil
	}
	if t.Equal(time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)) {
		return t.Format(time.DateOnly), nil
	}
	return t.Format(time.RFC3339Nano), nil
}

// stringToOneElementSliceHook lets a single string stand for a one-element list
// (`mailboxes: INBOX`, `flag: \Flagged`). Unlike viper's default hook it never splits on commas,
// which are legal in mailbox names and keywords.
func stringToOneElementSliceHook(from, to reflect.Type, data any) (any, error) {
	if from.Kind() != reflect.String || to.Kind() != reflect.Slice || to.Elem().Kind() != reflect.String {
		return data, nil
	}
	s, ok := data.(string)
	if !ok {
		return data, nil
	}
	if s == "" {
		return []string{}, nil
	}
	return []string{s}, nil
}

// ByteSize is a number of bytes. In the configuration it is written with a unit: B, kB/KB, MB, GB,
// TB are powers of 10 (MB = 10⁶ bytes), KiB, MiB, GiB, TiB powers of 2 (MiB = 2²⁰); a plain number
// is bytes. A decimal fraction is allowed when the result is a whole number of bytes ("1.5GB").
type ByteSize int64

// Byte size units.
const (
	B   ByteSize = 1
	KB  ByteSize = 1000
	MB  ByteSize = 1000 * KB
	GB  ByteSize = 1000 * MB
	TB  ByteSize = 1000 * GB
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
)

// byteUnits are matched case-insensitively, and printed in this order (largest exact first).
var byteUnits = [...]struct {
	name string
	size ByteSize
}{
	{"TiB", TiB}, {"TB", TB}, {"GiB", GiB}, {"GB", GB}, {"MiB", MiB}, {"MB", MB}, {"KiB", KiB}, {"KB", KB}, {"B", B},
}

// ParseByteSize parses a size such as "2000MB", "256KiB", "1.5GB", "25 MiB" or "4096".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("invalid byte size %q: want a number and a unit such as 25MB or 256KiB", s)
	}
	mult := B
	if unit != "" {
		found := false
		for _, u := range byteUnits {
			if strings.EqualFold(unit, u.name) {
				mult, found = u.size, true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("invalid byte size %q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
		}
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("invalid byte size %q: bad number", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(int64(mult)))
	if !r.IsInt() {
		return 0, fmt.Errorf("invalid byte size %q: not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("invalid byte size %q: too large", s)
	}
	return ByteSize(r.Num().Int64()), nil
}

// String formats b with the largest unit that divides it exactly: 25MB, 256KiB, 1500B.
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	for _, u := range byteUnits {
		if b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseByteSize.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText implements encoding.TextMarshaler with String.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// expandEnv replaces ${NAME} in every string of cfg, reporting every unset variable with the field
// that references it.
func expandEnv(cfg *Config, getenv func(string) (string, bool)) error {
	var p problems
	walkStrings(reflect.ValueOf(cfg).Elem(), "", func(field string, v reflect.Value) {
		out, err := expandString(v.String(), getenv)
		if err != nil {
			p.add(field, "%s", err)
			return
		}
		v.SetString(out)
	})
	return p.err()
}

// expandString expands every ${NAME} in s. Errors name the variable, never the value.
func expandString(s string, getenv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	var unset []string
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", errors.New(`"${" without a closing "}" (only ${NAME} is expanded)`)
		}
		name := s[i+2 : i+end]
		if !validEnvName(name) {
			return "", errors.New(`malformed variable reference: only ${NAME} with letters, digits and underscores is expanded`)
		}
		val, ok := getenv(name)
		if !ok {
			unset = append(unset, "${"+name+"}")
		}
		b.WriteString(val)
		s = s[i+end+1:]
	}
	switch len(unset) {
	case 0:
		return b.String(), nil
	case 1:
		return "", fmt.Errorf("%s is not set", unset[0])
	default:
		return "", fmt.Errorf("%s are not set", strings.Join(unset, ", "))
	}
}

func validEnvName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// walkStrings calls fn with the field path of every settable string in v (structs, slices of
// structs or strings), naming fields by their mapstructure tag.
func walkStrings(v reflect.Value, path string, fn func(field string, v reflect.Value)) {
	switch v.Kind() {
	case reflect.String:
		fn(path, v)
	case reflect.Pointer:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
			if tag == "-" {
				continue
			}
			if tag == "" {
				tag = strings.ToLower(f.Name)
			}
			child := tag
			if path != "" {
				child = path + "." + tag
			}
			walkStrings(v.Field(i), child, fn)
		}
	case reflect.Slice:
		for i := range v.Len() {
			e := v.Index(i)
			name := ""
			if e.Kind() == reflect.Struct {
				if n := e.FieldByName("Name"); n.IsValid() && n.Kind() == reflect.String {
					name = n.String()
				}
			}
			walkStrings(e, itemPath(path, i, name), fn)
		}
	}
}

// readFiles reads password_file and secret_file into the fields they stand for, and checks that
// every tls.ca_file holds a certificate.
func (c *Config) readFiles() error {
	var p problems
	for i := range c.Accounts {
		a := &c.Accounts[i]
		path := itemPath("accounts", i, a.Name)
		readSecretFile(&p, path+".imap", "password", &a.IMAP.Password, a.IMAP.PasswordFile)
		readSecretFile(&p, path+".smtp", "password", &a.SMTP.Password, a.SMTP.PasswordFile)
		for _, o := range []struct {
			path string
			cfg  *OAuth2Config
		}{{path + ".imap.oauth2", a.IMAP.OAuth2}, {path + ".smtp.oauth2", a.SMTP.OAuth2}} {
			if o.cfg != nil {
				readSecretFile(&p, o.path, "client_secret", &o.cfg.ClientSecret, o.cfg.ClientSecretFile)
				readSecretFile(&p, o.path, "refresh_token", &o.cfg.RefreshToken, o.cfg.RefreshTokenFile)
			}
		}
		if a.IMAP.TLS.CAFile != "" {
			if _, err := a.IMAP.TLS.ClientConfig(a.IMAP.Host); err != nil {
				p.add(path+".imap.tls.ca_file", "%s", err)
			}
		}
		if a.SMTP.TLS.CAFile != "" {
			if _, err := a.SMTP.TLS.ClientConfig(a.SMTP.Host); err != nil {
				p.add(path+".smtp.tls.ca_file", "%s", err)
			}
		}
	}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		path := itemPath("webhooks", i, w.Name)
		if w.SecretFile != "" && len(w.Secrets) > 0 {
			p.add(path+".secret_file", "set both secret_file and secrets; use one")
			continue
		}
		readSecretFile(&p, path, "secret", &w.Secret, w.SecretFile)
		for j := range w.Headers {
			h := &w.Headers[j]
			readSecretFile(&p, fmt.Sprintf("%s.headers[%d]", path, j), "value", &h.Value, h.ValueFile)
		}
		readTemplateFile(&p, path, w) // formats.go
	}
	return p.err()
}

// readSecretFile reads file into *value (the field named key under path), refusing both set.
func readSecretFile(p *problems, path, key string, value *string, file string) {
	if file == "" {
		return
	}
	field := path + "." + key + "_file"
	if *value != "" {
		p.add(field, "set both %s and %s_file; use one", key, key)
		return
	}
	s, err := readSmallFile(file)
	if err != nil {
		p.add(field, "%s", err)
		return
	}
	s = strings.TrimSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		p.add(field, "file %s is empty", file)
		return
	}
	*value = s
}

// readSmallFile reads a secret file, refusing anything larger than a secret could be. Its errors
// name the file, never its content.
func readSmallFile(name string) (string, error) {
	f, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileSize+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if len(b) > maxSecretFileSize {
		return "", fmt.Errorf("file %s is larger than %d bytes: not a secret file?", name, maxSecretFileSize)
	}
	return string(b), nil
}

// ClientConfig returns the crypto/tls client configuration for a server named host: certificates
// are verified against CAFile (or the system roots) and ServerName (or host), TLS 1.2 at least.
func (t TLSConfig) ClientConfig(host string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// Addr returns host:port of the IMAP server.
func (c IMAPConfig) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// Addr returns host:port of the SMTP server.
func (c SMTPConfig) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// isGmail reports whether host is Gmail's IMAP server.
func isGmail(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return h == "imap.gmail.com" || h == "imap.googlemail.com"
}

// isLoopback reports whether host names the local machine without asking DNS: "localhost" and
// names under .localhost (RFC 6761 §6.3), or a loopback IP address.
func isLoopback(host string) bool {
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
	return ip != nil && ip.IsLoopback()
}

// ApplyDefaults fills every unset field of every list item with its default (see
// config.example.yaml), spells every case of INBOX as "INBOX" (mailboxes, rule filters, move and
// copy targets), raises poll intervals below the minimum, and returns warnings for the
// operator: raised values, plaintext allowed by insecure: true, likely mistakes. It is idempotent.
// LoadConfig calls it; call it yourself on a Config built in code before Validate.
func (c *Config) ApplyDefaults() (warnings []string) {
	if c.StateDir == "" {
		c.StateDir = defaultStateDir
	}
	if c.Log.Level == "" {
		c.Log.Level = defaultLogLevel
	}
	if c.Log.Format == "" {
		c.Log.Format = defaultLogFormat
	}
	// HTTP.Listen is left alone: "" means disabled, and DefaultConfig holds its default.
	for i := range c.Accounts {
		c.Accounts[i].applyDefaults(itemPath("accounts", i, c.Accounts[i].Name), &warnings)
	}
	for i := range c.Webhooks {
		c.Webhooks[i].applyDefaults(itemPath("webhooks", i, c.Webhooks[i].Name), &warnings)
	}
	for i := range c.Replies {
		if c.Replies[i].OncePer == 0 {
			c.Replies[i].OncePer = defaultOncePer
		}
		if c.Replies[i].MaxReceived == 0 {
			c.Replies[i].MaxReceived = defaultMaxReceived
		}
	}
	for i := range c.Rules {
		r := &c.Rules[i]
		r.Mailbox = canonicalMailbox(r.Mailbox)
		for j := range r.Actions {
			r.Actions[j].Move = canonicalMailbox(r.Actions[j].Move)
			r.Actions[j].Copy = canonicalMailbox(r.Actions[j].Copy)
		}
	}
	return append(warnings, c.ruleWarnings()...)
}

func (a *Account) applyDefaults(path string, warnings *[]string) {
	m := &a.IMAP
	if m.Security == "" {
		m.Security = SecurityTLS
	}
	if m.Port == 0 {
		m.Port = 143
		if m.Security == SecurityTLS {
			m.Port = 993
		}
	}
	if len(m.Mailboxes) == 0 {
		m.Mailboxes = []string{defaultMailbox}
	}
	for i, mb := range m.Mailboxes {
		m.Mailboxes[i] = canonicalMailbox(mb)
	}
	if m.Start == "" {
		m.Start = StartNew
	}
	if m.IdleRefresh == 0 {
		m.IdleRefresh = defaultIdleRefresh
	}
	if m.PollInterval == 0 {
		m.PollInterval = defaultPollInterval
	}
	if m.CommandTimeout == 0 {
		m.CommandTimeout = defaultCommandTimeout
	}
	floor, why := minPollInterval, ""
	if isGmail(m.Host) {
		floor, why = minGmailPollInterval, " for Gmail"
	}
	if m.PollInterval < floor {
		*warnings = append(*warnings, fmt.Sprintf("%s.imap.poll_interval: %s is below the minimum of %s%s; using %s",
			path, m.PollInterval, floor, why, floor))
		m.PollInterval = floor
	}
	if m.TrustedAuthservID == "" && isGmail(m.Host) {
		m.TrustedAuthservID = gmailAuthservID
	}
	if m.Backoff.Min == 0 {
		m.Backoff.Min = defaultBackoffMin
	}
	if m.Backoff.Max == 0 {
		m.Backoff.Max = defaultBackoffMax
	}
	if m.Backoff.AuthMin == 0 {
		m.Backoff.AuthMin = defaultBackoffAuthMin
	}
	if m.Backoff.QuotaMin == 0 {
		m.Backoff.QuotaMin = defaultBackoffQuota
	}
	m.OAuth2.applyDefaults()
	if m.Security == SecurityPlain && m.Insecure && m.Host != "" && !isLoopback(m.Host) {
		*warnings = append(*warnings, fmt.Sprintf("%s.imap: plaintext IMAP to %s (insecure: true): the password and mail travel unencrypted",
			path, m.Host))
	}

	s := &a.SMTP
	if s.Configured() {
		if s.Security == "" {
			s.Security = SecurityTLS
		}
		if s.Port == 0 {
			switch s.Security {
			case SecurityTLS:
				s.Port = 465 // RFC 8314 §3.3
			case SecurityStartTLS:
				s.Port = 587
			default:
				s.Port = 25
			}
		}
		s.OAuth2.applyDefaults()
		if s.From == "" && strings.Contains(s.Username, "@") {
			s.From = s.Username
		}
		if s.HelloName == "" {
			if addr, err := netmail.ParseAddress(s.From); err == nil {
				s.HelloName = addr.Address[strings.LastIndexByte(addr.Address, '@')+1:]
			}
		}
		if s.Timeout == 0 {
			s.Timeout = defaultSMTPTimeout
		}
		if s.Security == SecurityPlain && s.Insecure && !isLoopback(s.Host) {
			*warnings = append(*warnings, fmt.Sprintf("%s.smtp: plaintext SMTP to %s (insecure: true): the password and replies travel unencrypted",
				path, s.Host))
		}
	}

	l := &a.Limits
	if l.DownloadPerDay == 0 {
		l.DownloadPerDay = defaultDownloadPerDay
	}
	if l.MaxMessageSize == 0 {
		l.MaxMessageSize = defaultMaxMessageSize
	}
	if l.MaxConnections == 0 {
		l.MaxConnections = max(defaultMaxConnections, len(m.Mailboxes))
	}
	if l.RepliesPerDay == 0 {
		l.RepliesPerDay = defaultRepliesPerDay
	}
	if isGmail(m.Host) && l.MaxConnections > gmailMaxConnections {
		*warnings = append(*warnings, fmt.Sprintf("%s.limits.max_connections: %d is more than the ~%d IMAP connections Gmail allows per account, shared by every client",
			path, l.MaxConnections, gmailMaxConnections))
	}
}

func (w *Webhook) applyDefaults(path string, warnings *[]string) {
	if w.Format == "" {
		w.Format = FormatJSON
	}
	if w.Body == "" {
		w.Body = defaultWebhookBody
	}
	if w.MaxBodyBytes == 0 {
		w.MaxBodyBytes = defaultMaxBodyBytes
	}
	if w.Attachments == "" {
		w.Attachments = defaultWebhookAttachments
	}
	if w.MaxInlineBytes == 0 {
		w.MaxInlineBytes = defaultMaxInlineBytes
	}
	if w.Timeout == 0 {
		w.Timeout = defaultWebhookTimeout
	}
	if w.Retry.MaxAge == 0 {
		w.Retry.MaxAge = defaultRetryMaxAge
	}
	if w.Retry.MinBackoff == 0 {
		w.Retry.MinBackoff = defaultRetryMinBackoff
	}
	if w.Retry.MaxBackoff == 0 {
		w.Retry.MaxBackoff = defaultRetryMaxBackoff
	}
	if w.Concurrency == 0 {
		w.Concurrency = defaultConcurrency
	}
	if w.DisableAfter == 0 {
		w.DisableAfter = dispatch.DefaultDisableAfter
	}
	if w.Insecure {
		if u, err := url.Parse(w.URL); err == nil && strings.EqualFold(u.Scheme, "http") && u.Hostname() != "" && !isLoopback(u.Hostname()) {
			// REQUIREMENTS D84: accepted, and logged at startup. The host only: the URL may carry a token.
			*warnings = append(*warnings, fmt.Sprintf("%s.url: plain http to %s (insecure: true): payloads and signatures travel unencrypted",
				path, u.Hostname()))
		}
	}
}

// ruleWarnings notes rule setups that work but are probably not what was meant.
func (c *Config) ruleWarnings() (warnings []string) {
	if len(c.Accounts) > 0 && len(c.Rules) == 0 {
		warnings = append(warnings, "rules: none configured; new mail is checkpointed and nothing else happens")
	}
	for i, r := range c.Rules {
		path := itemPath("rules", i, r.Name)
		for j, act := range r.Actions {
			if act.Move == "" {
				continue
			}
			for _, a := range c.ruleAccounts(r) {
				if (r.Mailbox == "" || sameMailbox(r.Mailbox, act.Move)) && a.watches(act.Move) {
					warnings = append(warnings, fmt.Sprintf("%s.actions[%d].move: %q is watched by account %q and the rule applies there too: moved mail will match again",
						path, j, act.Move, a.Name))
				}
			}
		}
	}
	return warnings
}

// ruleAccounts returns the accounts rule r can apply to: its account, or every account watching its
// mailbox (all of them without a mailbox filter).
func (c *Config) ruleAccounts(r Rule) []*Account {
	var out []*Account
	for i := range c.Accounts {
		a := &c.Accounts[i]
		if r.Account != "" && a.Name != r.Account {
			continue
		}
		if r.Mailbox != "" && !a.watches(r.Mailbox) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// watches reports whether the account watches mailbox.
func (a *Account) watches(mailbox string) bool {
	for _, m := range a.IMAP.Mailboxes {
		if sameMailbox(m, mailbox) {
			return true
		}
	}
	return false
}

// canonicalMailbox spells any case of INBOX as "INBOX" (RFC 3501 §5.1: the name is
// case-insensitive), so the rest of the program can compare mailbox names exactly.
func canonicalMailbox(name string) string {
	if strings.EqualFold(name, "INBOX") {
		return "INBOX"
	}
	return name
}

// sameMailbox compares mailbox names; INBOX is case-insensitive (RFC 3501 §5.1), others are not.
func sameMailbox(a, b string) bool {
	if strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX") {
		return true
	}
	return a == b
}

// Validate reports every problem in c, joined, each a *FieldError naming its field. It does no I/O
// and expects ApplyDefaults to have run. Rule expressions are only checked for presence here; the
// rules package compiles them.
func (c *Config) Validate() error {
	var p problems
	if c.StateDir == "" {
		p.add("state_dir", "required")
	}
	oneOf(&p, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(&p, "log.format", c.Log.Format, "text", "json")
	if c.HTTP.Listen != "" {
		if _, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			p.add("http.listen", "want host:port (or \"\" to disable): %v", err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			p.add("http.listen", "invalid port %q", port)
		}
	}

	if len(c.Accounts) == 0 {
		p.add("accounts", "at least one account is required")
	}
	accounts := uniqueNames(&p, "accounts", len(c.Accounts), func(i int) string { return c.Accounts[i].Name })
	webhooks := uniqueNames(&p, "webhooks", len(c.Webhooks), func(i int) string { return c.Webhooks[i].Name })
	replies := uniqueNames(&p, "replies", len(c.Replies), func(i int) string { return c.Replies[i].Name })
	uniqueNames(&p, "rules", len(c.Rules), func(i int) string { return c.Rules[i].Name })

	for i := range c.Accounts {
		c.Accounts[i].validate(&p, itemPath("accounts", i, c.Accounts[i].Name))
	}
	for i := range c.Webhooks {
		c.Webhooks[i].validate(&p, itemPath("webhooks", i, c.Webhooks[i].Name))
	}
	for i := range c.Replies {
		c.Replies[i].validate(&p, itemPath("replies", i, c.Replies[i].Name))
	}
	for i := range c.Rules {
		c.validateRule(&p, i, accounts, webhooks, replies)
	}
	return p.err()
}

// oneOf checks that value is one of allowed.
func oneOf(p *problems, field, value string, allowed ...string) bool {
	for _, a := range allowed {
		if value == a {
			return true
		}
	}
	p.add(field, "%q is not one of %s", value, strings.Join(allowed, ", "))
	return false
}

// uniqueNames checks that every item of a list has a valid, unique name, and returns the set of
// names.
func uniqueNames(p *problems, list string, n int, name func(int) string) map[string]bool {
	seen := make(map[string]bool, n)
	for i := range n {
		s := name(i)
		switch {
		case s == "":
			p.add(itemPath(list, i, "")+".name", "required")
		case !validName(s):
			p.add(itemPath(list, i, s)+".name", "use 1–64 letters, digits and . _ - @ +")
		case seen[s]:
			p.add(itemPath(list, i, s)+".name", "duplicate name")
		}
		seen[s] = true
	}
	return seen
}

// validName reports whether s is a usable name: names appear in logs, metric labels, job ids and
// CLI arguments.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._-@+", c) >= 0) {
			return false
		}
	}
	return true
}

func (a *Account) validate(p *problems, path string) {
	m := &a.IMAP
	ip := path + ".imap"
	validateServer(p, ip, m.Host, m.Port, m.Security, m.Insecure, m.TLS)
	if m.Username == "" {
		p.add(ip+".username", "required")
	}
	switch {
	case m.OAuth2 != nil:
		if m.Password != "" {
			p.add(ip+".password", "set both password and oauth2; use one")
		}
		m.OAuth2.validate(p, ip+".oauth2")
	case m.Password == "":
		p.add(ip+".password", "required (or password_file, or oauth2)")
	}
	seen := map[string]bool{}
	for j, mb := range m.Mailboxes {
		key := mb
		if strings.EqualFold(mb, "INBOX") {
			key = "INBOX"
		}
		switch {
		case strings.TrimSpace(mb) == "":
			p.add(fmt.Sprintf("%s.mailboxes[%d]", ip, j), "empty mailbox name")
		case seen[key]:
			p.add(fmt.Sprintf("%s.mailboxes[%d]", ip, j), "%q is listed twice", mb)
		}
		seen[key] = true
	}
	if len(m.Mailboxes) == 0 {
		p.add(ip+".mailboxes", "at least one mailbox is required")
	}
	if m.Start != StartNew && m.Start != StartAll {
		if _, err := time.Parse(time.DateOnly, m.Start); err != nil {
			p.add(ip+".start", "%q is not new, all or a date like 2026-01-01", m.Start)
		}
	}
	if m.IdleRefresh < minIdleRefresh || m.IdleRefresh > maxIdleRefresh {
		// RFC 2177 §3: clients must re-issue IDLE at least every 29 minutes; we keep a margin.
		p.add(ip+".idle_refresh", "%s is outside %s–%s", m.IdleRefresh, minIdleRefresh, maxIdleRefresh)
	}
	if m.PollInterval < minPollInterval {
		p.add(ip+".poll_interval", "%s is below the minimum of %s", m.PollInterval, minPollInterval)
	}
	if m.CommandTimeout < minCommandTimeout || m.CommandTimeout > maxCommandTimeout {
		p.add(ip+".command_timeout", "%s is outside %s–%s", m.CommandTimeout, minCommandTimeout, maxCommandTimeout)
	}
	if strings.ContainsFunc(m.TrustedAuthservID, isSpaceOrControl) {
		p.add(ip+".trusted_authserv_id", "must not contain spaces")
	}
	b := m.Backoff
	bp := ip + ".backoff"
	positive(p, bp+".min", b.Min)
	positive(p, bp+".auth_min", b.AuthMin)
	positive(p, bp+".quota_min", b.QuotaMin)
	if b.Max < b.Min {
		p.add(bp+".max", "%s is less than backoff.min %s", b.Max, b.Min)
	}

	s := &a.SMTP
	sp := path + ".smtp"
	if s.Configured() {
		validateServer(p, sp, s.Host, s.Port, s.Security, s.Insecure, s.TLS)
		if s.Password != "" && s.Username == "" {
			p.add(sp+".username", "required with a password")
		}
		if s.OAuth2 != nil {
			if s.Password != "" {
				p.add(sp+".password", "set both password and oauth2; use one")
			}
			if s.Username == "" {
				p.add(sp+".username", "required with oauth2")
			}
			s.OAuth2.validate(p, sp+".oauth2")
		} else if s.Username != "" && s.Password == "" {
			p.add(sp+".password", "required with a username (or password_file, or oauth2)")
		}
		if s.From == "" {
			p.add(sp+".from", "required (no default: username is not an address)")
		} else if _, err := netmail.ParseAddress(s.From); err != nil {
			p.add(sp+".from", "not an email address: %v", err)
		}
		if s.Timeout < minSMTPTimeout || s.Timeout > maxSMTPTimeout {
			p.add(sp+".timeout", "%s is outside %s–%s", s.Timeout, minSMTPTimeout, maxSMTPTimeout)
		}
		if s.HelloName == "" || strings.ContainsFunc(s.HelloName, isSpaceOrControl) {
			p.add(sp+".hello_name", "want a host name (default: the domain of from)")
		}
		if s.EnvelopeFrom != "" {
			if addr, err := netmail.ParseAddress(s.EnvelopeFrom); err != nil || addr.Address != s.EnvelopeFrom {
				p.add(sp+".envelope_from", "want a bare address like me@example.com, or \"\" for the null sender")
			}
		}
	} else if *s != (SMTPConfig{}) {
		p.add(sp+".host", "required when smtp is configured")
	}

	l := a.Limits
	lp := path + ".limits"
	if l.MaxMessageSize <= 0 {
		p.add(lp+".max_message_size", "must be positive")
	}
	if l.DownloadPerDay <= 0 {
		p.add(lp+".download_per_day", "must be positive")
	} else if l.MaxMessageSize > l.DownloadPerDay/4 {
		p.add(lp+".download_per_day", "%s must be at least 4 × max_message_size (%s)", l.DownloadPerDay, l.MaxMessageSize)
	}
	if l.MaxConnections < len(m.Mailboxes) || l.MaxConnections < 1 {
		p.add(lp+".max_connections", "%d is fewer than the %d watched mailboxes (one connection each)", l.MaxConnections, len(m.Mailboxes))
	}
	if l.RepliesPerDay < 1 {
		p.add(lp+".replies_per_day", "must be at least 1")
	}
}

// validateServer checks the connection settings shared by imap and smtp.
func validateServer(p *problems, path, host string, port int, security string, insecure bool, t TLSConfig) {
	switch {
	case host == "":
		p.add(path+".host", "required")
	case strings.Contains(host, "://") || strings.Contains(host, "/"):
		p.add(path+".host", "want a host name only, without scheme or path")
	case strings.ContainsFunc(host, isSpaceOrControl):
		p.add(path+".host", "must not contain spaces")
	}
	if port < 1 || port > 65535 {
		p.add(path+".port", "%d is not a TCP port", port)
	}
	if oneOf(p, path+".security", security, SecurityTLS, SecurityStartTLS, SecurityPlain) && security == SecurityPlain {
		if host != "" && !isLoopback(host) && !insecure {
			p.add(path+".security", "plain sends the password unencrypted; allowed only to a loopback host or with insecure: true")
		}
		if t != (TLSConfig{}) {
			p.add(path+".tls", "set, but security is plain")
		}
	}
}

func positive(p *problems, field string, d time.Duration) {
	if d <= 0 {
		p.add(field, "must be positive")
	}
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func (w *Webhook) validate(p *problems, path string) {
	validateWebhookURL(p, path+".url", w.URL, w.Insecure)

	switch {
	case w.Secret != "" && len(w.Secrets) > 0:
		p.add(path+".secrets", "set both secret and secrets; use one")
	case w.Secret == "" && len(w.Secrets) == 0:
		p.add(path+".secrets", "a signing secret is required (secret, secrets or secret_file)")
	case w.Secret != "":
		field := path + ".secret"
		if w.SecretFile != "" {
			field = path + ".secret_file"
		}
		if _, err := dispatch.ParseSecret(w.Secret); err != nil {
			p.add(field, "%s", err)
		}
	default:
		for j, s := range w.Secrets {
			if _, err := dispatch.ParseSecret(s); err != nil {
				p.add(fmt.Sprintf("%s.secrets[%d]", path, j), "%s", err)
			}
		}
	}

	for j, h := range w.Headers {
		hp := fmt.Sprintf("%s.headers[%d]", path, j)
		switch {
		case h.Name == "":
			p.add(hp+".name", "required")
		case !validToken(h.Name):
			p.add(hp+".name", "%q is not a valid header name", h.Name)
		case reservedHeader(h.Name):
			p.add(hp+".name", "%s is set by mailhook and cannot be overridden", h.Name)
		}
		if strings.ContainsAny(h.Value, "\r\n\x00") {
			p.add(hp+".value", "must not contain CR, LF or NUL")
		}
	}

	w.validateFormat(p, path) // formats.go
	oneOf(p, path+".body", w.Body, BodyNone, BodyText, BodyHTML, BodyBoth)
	if w.MaxBodyBytes <= 0 {
		p.add(path+".max_body_bytes", "must be positive")
	}
	w.validateAttachments(p, path) // attachments.go
	if w.Timeout <= 0 || w.Timeout > maxWebhookTimeout {
		p.add(path+".timeout", "%s is outside (0, %s]", w.Timeout, maxWebhookTimeout)
	}
	r := w.Retry
	rp := path + ".retry"
	positive(p, rp+".max_age", r.MaxAge)
	positive(p, rp+".min_backoff", r.MinBackoff)
	if r.MaxBackoff < r.MinBackoff {
		p.add(rp+".max_backoff", "%s is less than min_backoff %s", r.MaxBackoff, r.MinBackoff)
	}
	if w.Concurrency < 1 || w.Concurrency > maxConcurrency {
		p.add(path+".concurrency", "%d is outside 1–%d", w.Concurrency, maxConcurrency)
	}
	positive(p, path+".disable_after", w.DisableAfter)
}

// validateWebhookURL checks a webhook URL without ever echoing it: it may carry a token.
func validateWebhookURL(p *problems, field, raw string, insecure bool) {
	if raw == "" {
		p.add(field, "required")
		return
	}
	u, err := url.Parse(raw)
	if err != nil {
		p.add(field, "not a valid URL")
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		// REQUIREMENTS D84.
		if u.Hostname() != "" && !isLoopback(u.Hostname()) && !insecure {
			p.add(field, "plain http to a non-loopback host needs insecure: true (use https)")
		}
	default:
		p.add(field, "scheme must be http or https")
	}
	if u.Hostname() == "" {
		p.add(field, "has no host")
	}
	if u.Fragment != "" {
		p.add(field, "must not have a #fragment")
	}
}

// validToken reports whether s is an HTTP field name (RFC 9110 §5.1: a token).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// reservedHeader reports whether mailhook sets the header itself (Standard Webhooks and framing).
func reservedHeader(name string) bool {
	switch strings.ToLower(name) {
	case "webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key",
		"content-type", "content-length", "content-encoding", "transfer-encoding", "host", "connection":
		return true
	}
	return false
}

func (r *Reply) validate(p *problems, path string) {
	if strings.TrimSpace(r.Subject) == "" {
		p.add(path+".subject", "required")
	}
	if strings.TrimSpace(r.Body) == "" {
		p.add(path+".body", "required")
	}
	if r.OncePer < minOncePer {
		p.add(path+".once_per", "%s is below the minimum of %s", r.OncePer, minOncePer)
	}
	for j, a := range r.OwnAddresses {
		if _, err := netmail.ParseAddress(a); err != nil {
			p.add(fmt.Sprintf("%s.own_addresses[%d]", path, j), "not an email address: %v", err)
		}
	}
	for j, pat := range r.Suppress {
		if strings.TrimSpace(pat) == "" || strings.ContainsFunc(pat, isSpaceOrControl) {
			p.add(fmt.Sprintf("%s.suppress[%d]", path, j), "want an address pattern such as *-bounces@*")
		}
	}
	if r.MaxReceived < 1 {
		p.add(path+".max_received", "must be at least 1")
	}
}

func (c *Config) validateRule(p *problems, i int, accounts, webhooks, replies map[string]bool) {
	r := c.Rules[i]
	path := itemPath("rules", i, r.Name)
	if r.Account != "" && !accounts[r.Account] {
		p.add(path+".account", "no account named %q", r.Account)
	}
	if r.Mailbox != "" && (r.Account == "" || accounts[r.Account]) && len(c.ruleAccounts(r)) == 0 {
		if r.Account != "" {
			p.add(path+".mailbox", "%q is not in the mailboxes of account %q", r.Mailbox, r.Account)
		} else {
			p.add(path+".mailbox", "%q is not watched by any account", r.Mailbox)
		}
	}
	if strings.TrimSpace(r.When) == "" {
		p.add(path+".when", "required (use 'true' to match every message)")
	}
	if len(r.Actions) == 0 {
		p.add(path+".actions", "at least one action is required")
	}
	moved := false
	for j, act := range r.Actions {
		ap := fmt.Sprintf("%s.actions[%d]", path, j)
		kinds := act.kinds()
		if len(kinds) == 0 {
			p.add(ap, "no action set (one of webhook, reply, mark_seen: true, flag, move, copy)")
			continue
		}
		if len(kinds) > 1 {
			p.add(ap, "sets %s: one action per list item", strings.Join(kinds, " and "))
			continue
		}
		if moved && kinds[0] != ActionWebhook && kinds[0] != ActionReply {
			p.add(ap+"."+kinds[0], "comes after a move: the message is no longer in the mailbox")
		}
		switch kinds[0] {
		case ActionWebhook:
			if !webhooks[act.Webhook] {
				p.add(ap+".webhook", "no webhook named %q", act.Webhook)
			}
		case ActionReply:
			if !replies[act.Reply] {
				p.add(ap+".reply", "no reply named %q", act.Reply)
			}
			for _, a := range c.ruleAccounts(r) {
				if !a.SMTP.Configured() {
					p.add(ap+".reply", "account %q has no smtp.host to send replies through", a.Name)
				}
			}
		case ActionFlag:
			for k, f := range act.Flag {
				if !validFlag(f) {
					p.add(fmt.Sprintf("%s.flag[%d]", ap, k), "%q is not a valid IMAP flag or keyword", f)
				}
			}
		case ActionMove:
			moved = true
			if strings.TrimSpace(act.Move) == "" {
				p.add(ap+".move", "empty mailbox name")
			}
		case ActionCopy:
			if strings.TrimSpace(act.Copy) == "" {
				p.add(ap+".copy", "empty mailbox name")
			}
		}
	}
}

// validFlag reports whether f can be sent in STORE +FLAGS: a keyword atom, or a system flag
// (RFC 3501 §2.3.2) other than \Recent, which clients cannot set.
func validFlag(f string) bool {
	atom := strings.TrimPrefix(f, `\`)
	if atom == "" || strings.EqualFold(f, `\Recent`) {
		return false
	}
	// RFC 3501 §9: atom-specials are ( ) { SP CTL % * " \ ].
	return !strings.ContainsFunc(atom, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r > 0x7e || strings.ContainsRune(`(){%*"\]`, r)
	})
}
