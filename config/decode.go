package config

// Parsing: the YAML file, read strictly by viper and decoded with mapstructure into a Config that
// starts as Default. Decoding errors become FieldErrors, one per unknown key.

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// parse reads the YAML file at path over Default. Nothing is expanded, read or defaulted yet.
func parse(path string) (*Config, error) {
	cfg := Default()
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml") // whatever the file's extension
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := v.UnmarshalExact(cfg, viper.DecodeHook(configDecodeHook())); err != nil {
		return nil, decodeProblems(err)
	}
	return cfg, nil
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
		p.add(field, "unknown key")
	}
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
