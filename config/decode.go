package config

// Parsing: the YAML file, read strictly by viper and decoded with mapstructure into a Config that
// starts as Default. Decoding errors become FieldErrors, one per unknown key.

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// parse reads the YAML file at path over Default. Nothing is expanded, read or defaulted yet.
func parse(path string) (*Config, error) {
	cfg := Default()
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml") // whatever the file's extension
	if err := v.ReadInConfig(); err != nil {
		var pe viper.ConfigParseError
		if errors.As(err, &pe) {
			return nil, yamlError(path, err)
		}
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := v.UnmarshalExact(cfg, viper.DecodeHook(configDecodeHook())); err != nil {
		return nil, decodeProblems(err)
	}
	if err := restoreExtractNames(path, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// restoreExtractNames gives the rules' extract names back the case the file wrote them in:
// they are names a receiver reads in the payload's `fields`, and viper lower-cases every map key.
// Two names that differ only in case are refused.
func restoreExtractNames(path string, cfg *Config) error {
	var raw struct {
		Rules []struct {
			Extract yaml.Node `yaml:"extract"`
		} `yaml:"rules"`
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if yaml.Unmarshal(text, &raw) != nil {
		return nil // viper read it; a shape this cannot read has no extract maps to restore
	}
	var p problems
	for i := range cfg.Rules {
		r := &cfg.Rules[i]
		if i >= len(raw.Rules) || len(r.Extract) == 0 || raw.Rules[i].Extract.Kind != yaml.MappingNode {
			continue
		}
		written := map[string]string{} // lower case → as written
		nodes := raw.Rules[i].Extract.Content
		for k := 0; k+1 < len(nodes); k += 2 {
			name := nodes[k].Value
			lower := strings.ToLower(name)
			if prev, ok := written[lower]; ok && prev != name {
				p.add(ItemPath("rules", i, r.Name)+".extract", "names %q and %q differ only in case", prev, name)
				continue
			}
			written[lower] = name
		}
		restored := make(map[string]string, len(r.Extract))
		for k, expr := range r.Extract {
			if name, ok := written[k]; ok {
				k = name
			}
			restored[k] = expr
		}
		r.Extract = restored
	}
	return p.err()
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
				unknownKeys(&p, de.Name(), strings.Split(keys, ", "))
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

// unknownKeys reports each key of keys, found under the field path parent, as unknown.
func unknownKeys(p *problems, parent string, keys []string) {
	for _, k := range keys {
		field := k
		if parent != "" {
			field = parent + "." + k
		}
		if hint := Suggest(k, keysAt(parent)); hint != "" {
			p.add(field, "unknown key; did you mean %q?", hint)
			continue
		}
		p.add(field, "unknown key")
	}
}

// keysAt returns the YAML keys allowed under a decoded field path ("accounts[0].imap"; "" for
// the top level), from the Config struct's mapstructure tags.
func keysAt(path string) []string {
	t := reflect.TypeFor[Config]()
	if path != "" {
		for _, part := range strings.Split(path, ".") {
			name, _, _ := strings.Cut(part, "[")
			t = structOf(t)
			if t == nil {
				return nil
			}
			f, ok := fieldByKey(t, name)
			if !ok {
				return nil
			}
			t = f.Type
		}
	}
	t = structOf(t)
	if t == nil {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if key := keyOf(t.Field(i)); key != "" {
			keys = append(keys, key)
		}
	}
	return keys
}

// structOf dereferences pointers and slices down to a struct type, or returns nil.
func structOf(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	return t
}

func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if keyOf(t.Field(i)) == key {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// keyOf is the YAML key of a struct field, "" for fields not decoded.
func keyOf(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	if tag == "-" {
		return ""
	}
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}

// Suggest returns the candidate closest to got when got is a likely typo of it: within two edits
// (one for words of up to four letters), the same but for case, "_" and "-", or a prefix of the
// other; else "".
func Suggest(got string, keys []string) string {
	best, bestD := "", 3
	if len(got) <= 4 {
		bestD = 2
	}
	norm := func(s string) string { return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s)) }
	for _, k := range keys {
		d := editDistance(strings.ToLower(got), k)
		switch {
		case norm(got) == norm(k):
			d = 0
		case len(got) >= 3 && len(k) >= 3 && (strings.HasPrefix(k, got) || strings.HasPrefix(got, k)):
			d = min(d, 2) // hostname for host, val for value
		}
		if d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// configDecodeHook converts YAML scalars into the Config's field types.
func configDecodeHook() mapstructure.DecodeHookFunc {
	return mapstructure.ComposeDecodeHookFunc(
		byteSizeHook,
		durationNeedsUnitHook,
		stringToDurationHook,
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

// stringToDurationHook parses a duration, saying what is wrong with one that does not parse and
// how to write it: "15 seconds" is not a duration: write 15s.
func stringToDurationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType || from.Kind() != reflect.String {
		return data, nil
	}
	s := data.(string)
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err == nil {
		return d, nil
	}
	return nil, fmt.Errorf("%q is not a duration: %s", s, durationHint(s))
}

// durationHint proposes how to write s as a Go duration.
func durationHint(s string) string {
	units := map[string]string{"ns": "ns", "us": "us", "ms": "ms", "millisecond": "ms", "milliseconds": "ms",
		"s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
		"m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m",
		"h": "h", "hr": "h", "hrs": "h", "hour": "h", "hours": "h"}
	var n float64
	var unit string
	if k, err := fmt.Sscanf(strings.ToLower(strings.TrimSpace(s)), "%g%s", &n, &unit); err == nil && k == 2 {
		if u, ok := units[unit]; ok {
			return "write " + strconv.FormatFloat(n, 'f', -1, 64) + u
		}
		if unit == "d" || unit == "day" || unit == "days" {
			return "write " + strconv.FormatFloat(n*24, 'f', -1, 64) + "h (there is no day unit)"
		}
	}
	return "write it like 90s, 10m or 72h (units ns, us, ms, s, m, h)"
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
