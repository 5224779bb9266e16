package message

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// refLines splits s the way lineReader must: CR* LF or a single CR is a break; lines are cut to
// max bytes with their full length kept.
func refLines(s string, max int) []string {
	var out []string
	emit := func(content string, eol bool) {
		out = append(out, fmt.Sprintf("%q/%d/%v", content[:min(len(content), max)], len(content), eol))
	}
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\n':
			emit(s[start:i], true)
			start = i + 1
		case '\r':
			j := i
			for j < len(s) && s[j] == '\r' {
				j++
			}
			if j < len(s) && s[j] == '\n' {
				emit(s[start:i], true)
				i = j
			} else {
				emit(s[start:i], true)
			}
			start = i + 1
		}
	}
	if start < len(s) {
		emit(s[start:], false)
	}
	return out
}

func readLines(r io.Reader, max int) (out []string, raw int64) {
	lr := newLineReader(r, max)
	for {
		l, ok := lr.next()
		if !ok {
			return out, lr.raw
		}
		out = append(out, fmt.Sprintf("%q/%d/%v", l.b, l.full, l.eol))
	}
}

func checkLines(t *testing.T, s string, max int) {
	t.Helper()
	want := refLines(s, max)
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(s) },
		"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		"half":     func() io.Reader { return iotest.HalfReader(strings.NewReader(s)) },
	}
	for name, r := range readers {
		got, raw := readLines(r(), max)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s reader, max %d, input %q:\n got %v\nwant %v", name, max, s, got, want)
		}
		if raw != int64(len(s)) {
			t.Fatalf("%s reader: consumed %d of %d bytes", name, raw, len(s))
		}
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 5000)
	for _, s := range []string{
		"", "a", "a\r\nb\r\n", "a\nb\n", "a\rb\r", "a\r\r\nb", "a\r\rb", "\r\n\r\n", "\r", "\n", "a\r",
		long, long + "\r\n" + long + "\n", long + "\r", long[:999] + "\r\n" + "b",
		long[:1000] + "\r\n", long[:1001] + "\r\nz", long[:1063] + "\r\n", long[:1064] + "\r\n", long[:1065] + "\r\n",
		long[:4095] + "\r\n" + long[:4096] + "\r\n",
	} {
		checkLines(t, s, 1000)
	}
}

func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\r\nb\nc\rd\r\r\ne"), uint16(3))
	f.Add(bytes.Repeat([]byte("abc\r"), 500), uint16(1000))
	f.Fuzz(func(t *testing.T, data []byte, max uint16) {
		if bytes.Contains(data, bytes.Repeat([]byte("\r"), crLookahead)) {
			t.Skip("CR runs longer than the look-ahead are cut on purpose")
		}
		checkLines(t, string(data), int(max%2000)+1)
	})
}
