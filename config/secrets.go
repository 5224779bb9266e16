package config

// Secrets kept out of the file: ${NAME} references expanded from the environment, and the *_file
// keys read into the fields they stand for.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// standIns reports whether an unresolved secret of field gets a stand-in (Options.NoSecrets, but
// never state_dir, nor a field of the webhook Options.Webhook names).
func (o Options) standIns(field string) bool {
	if !o.NoSecrets || field == "state_dir" {
		return false
	}
	if _, item, ok := strings.Cut(field, "] "); ok && o.Webhook != "" && strings.HasPrefix(field, "webhooks[") {
		return !strings.HasPrefix(item, strconv.Quote(o.Webhook)+".")
	}
	return true
}

// expandEnv replaces ${NAME} in every string of cfg, reporting every unset variable with the field
// that references it. An unset variable in a field standIns holds expands to a stand-in (see
// Options.NoSecrets).
func expandEnv(cfg *Config, getenv func(string) (string, bool), standIns func(field string) bool) error {
	var p problems
	walkStrings(reflect.ValueOf(cfg).Elem(), "", func(field string, v reflect.Value) {
		lookup := getenv
		if standIns(field) {
			whole := strings.HasPrefix(v.String(), "${") && strings.Index(v.String(), "}") == len(v.String())-1
			lookup = func(name string) (string, bool) {
				if val, ok := getenv(name); ok {
					return val, true
				}
				return standIn(field, whole), true
			}
		}
		out, err := expandString(v.String(), lookup)
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

// walkStrings calls fn with the field path of every settable string in v (structs, pointers,
// slices and maps of them), naming fields by their mapstructure tag and map entries by their key.
func walkStrings(v reflect.Value, path string, fn func(field string, v reflect.Value)) {
	switch v.Kind() {
	case reflect.String:
		fn(path, v)
	case reflect.Pointer:
		if !v.IsNil() {
			walkStrings(v.Elem(), path, fn)
		}
	case reflect.Struct:
		walkStruct(v, path, fn)
	case reflect.Slice:
		for i := range v.Len() {
			e := v.Index(i)
			name := ""
			if e.Kind() == reflect.Struct {
				if n := e.FieldByName("Name"); n.IsValid() && n.Kind() == reflect.String {
					name = n.String()
				}
			}
			walkStrings(e, ItemPath(path, i, name), fn)
		}
	case reflect.Map:
		walkMap(v, path, fn)
	}
}

func walkStruct(v reflect.Value, path string, fn func(field string, v reflect.Value)) {
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
}

// walkMap walks the values of a map with string keys, in key order, as path.KEY. A map value is
// not settable, so each is walked as a copy and stored back.
func walkMap(v reflect.Value, path string, fn func(field string, v reflect.Value)) {
	if v.Type().Key().Kind() != reflect.String {
		return
	}
	keys := v.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		e := reflect.New(v.Type().Elem()).Elem()
		e.Set(v.MapIndex(k))
		walkStrings(e, path+"."+k.String(), fn)
		v.SetMapIndex(k, e)
	}
}

// readFiles reads password_file and secret_file into the fields they stand for, and checks that
// every tls.ca_file holds a certificate.
func (c *Config) readFiles(standIns func(field string) bool) error {
	var p problems
	c.readStoreFiles(&p)
	for i := range c.Accounts {
		path := ItemPath("accounts", i, c.Accounts[i].Name)
		c.Accounts[i].readFiles(&p, path, standIns(path+"."))
	}
	for i := range c.Webhooks {
		path := ItemPath("webhooks", i, c.Webhooks[i].Name)
		c.Webhooks[i].readFiles(&p, path, standIns(path+"."))
	}
	return p.err()
}

// readFiles reads an account's password and oauth2 secret files and checks its CA files.
func (a *Account) readFiles(p *problems, path string, standIns bool) {
	readSecretFile(p, path+".imap", "password", &a.IMAP.Password, a.IMAP.PasswordFile, standIns)
	readSecretFile(p, path+".smtp", "password", &a.SMTP.Password, a.SMTP.PasswordFile, standIns)
	for _, o := range []struct {
		path string
		cfg  *OAuth2Config
	}{{path + ".imap.oauth2", a.IMAP.OAuth2}, {path + ".smtp.oauth2", a.SMTP.OAuth2}} {
		if o.cfg != nil {
			readSecretFile(p, o.path, "client_secret", &o.cfg.ClientSecret, o.cfg.ClientSecretFile, standIns)
			readSecretFile(p, o.path, "refresh_token", &o.cfg.RefreshToken, o.cfg.RefreshTokenFile, standIns)
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

// readFiles reads a webhook's secret, header value and template files.
func (w *Webhook) readFiles(p *problems, path string, standIns bool) {
	if w.SecretFile != "" && len(w.Secrets) > 0 {
		p.add(path+".secret_file", "set both secret_file and secrets; use one")
		return
	}
	readSecretFile(p, path, "secret", &w.Secret, w.SecretFile, standIns)
	for j := range w.Headers {
		h := &w.Headers[j]
		readSecretFile(p, fmt.Sprintf("%s.headers[%d]", path, j), "value", &h.Value, h.ValueFile, standIns)
	}
	readTemplateFile(p, path, w) // formats.go
}

// readSecretFile reads file into *value (the field named key under path), refusing both set.
// With standIns, a file that cannot be read gives a stand-in value (see Options.NoSecrets).
func readSecretFile(p *problems, path, key string, value *string, file string, standIns bool) {
	if file == "" {
		return
	}
	field := path + "." + key + "_file"
	if *value != "" {
		p.add(field, "set both %s and %s_file; use one", key, key)
		return
	}
	s, err := ReadSecretFile(file)
	if err != nil && standIns {
		*value = standIn(path+"."+key, true)
		return
	}
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

// maxSecretFileSize bounds a *_file secret.
const maxSecretFileSize = 64 << 10

// ReadSecretFile reads a secret file whole, refusing anything larger than a secret could be
// (64 KiB). Its errors name the file, never its content.
func ReadSecretFile(name string) (string, error) {
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

// standInSecret is a well-formed signing secret (24 zero bytes) standing for one not resolved.
const standInSecret = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

// standIn is the value an unresolved ${NAME} or secret file gets under Options.NoSecrets: one that
// passes the field's validation. whole says the reference is the field's whole value.
func standIn(field string, whole bool) string {
	switch {
	case whole && strings.HasSuffix(field, ".url"):
		return "https://unresolved.invalid/"
	case whole && (strings.HasSuffix(field, ".secret") || strings.Contains(field, ".secrets[")):
		return standInSecret
	}
	return "unresolved"
}
