package message

import (
	"bytes"
	"io"
)

// lineReader splits a byte stream into lines, accepting CRLF, bare LF and bare CR as line breaks
// (RFC 5322 §2.3 asks for CRLF; real mail has all three). A run of CRs followed by LF ("\r\r\n",
// common in mail that passed through broken gateways) counts as one line break.
//
// Memory is bounded: a line longer than max bytes is cut to its first max bytes and the rest is
// read and discarded, so a 10 MiB line without a newline costs O(max) memory. The caller learns the
// line's full length for size accounting.
type lineReader struct {
	r    io.Reader
	buf  []byte // buffered input, buf[start:end] not yet consumed
	head []byte // the kept prefix of an over-long line
	max  int

	start, end int
	err        error // sticky error from r (io.EOF at the end)

	raw int64 // raw bytes consumed so far (line bytes and their terminators)
}

// crLookahead is how many bytes beyond max the buffer holds, so that a CRLF straddling the
// buffer's end is still seen as one line break.
const crLookahead = 64

// initialLineBuffer is the buffer a lineReader starts with; it grows up to max+crLookahead
// only when a line needs it.
const initialLineBuffer = 4096

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{r: r, max: max, buf: make([]byte, min(initialLineBuffer, max+crLookahead))}
}

// full reports whether the buffer is at its largest size and holds no consumed bytes.
func (lr *lineReader) full() bool {
	return lr.start == 0 && lr.end == lr.max+crLookahead
}

// line is one line of input, without its terminator.
type line struct {
	b    []byte // content, cut to at most max bytes; valid until the next call to next
	full int64  // length of the content before cutting
	eol  bool   // true when a line break ended the line (false only for the last line)
}

// cut reports whether the line was longer than the reader's limit.
func (l line) cut() bool { return int64(len(l.b)) < l.full }

// next returns the next line. ok is false at the end of the input; then err() tells whether the
// input ended with an I/O error rather than io.EOF.
func (lr *lineReader) next() (l line, ok bool) {
	for {
		data := lr.buf[lr.start:lr.end]
		if i, n, found := lr.findBreak(data); found {
			l = line{b: data[:min(i, lr.max)], full: int64(i), eol: true}
			lr.start += i + n
			lr.raw += int64(i + n)
			return l, true
		}
		if lr.err != nil {
			if len(data) == 0 {
				return line{}, false
			}
			lr.start = lr.end
			lr.raw += int64(len(data))
			return line{b: data[:min(len(data), lr.max)], full: int64(len(data))}, true
		}
		// Too long already, not counting a trailing CR run that may be the start of the break.
		if len(bytes.TrimRight(data, "\r")) > lr.max {
			return lr.longLine(), true
		}
		lr.fill()
	}
}

// findBreak finds the first line break in data: its offset i and length n. A CR at the very end
// of data is not yet a break unless the input has ended: the LF may still come.
func (lr *lineReader) findBreak(data []byte) (i, n int, found bool) {
	lf := bytes.IndexByte(data, '\n')
	scope := data
	if lf >= 0 {
		scope = data[:lf]
	}
	cr := bytes.IndexByte(scope, '\r')
	if cr < 0 {
		if lf < 0 {
			return 0, 0, false
		}
		return lf, 1, true
	}
	// A run of CRs: with an LF right after it, the whole run plus the LF is one break.
	j := cr
	for j < len(data) && data[j] == '\r' {
		j++
	}
	if j < len(data) {
		if data[j] == '\n' {
			return cr, j + 1 - cr, true
		}
		return cr, 1, true
	}
	// The run reaches the end of the buffered data: at the end of the input it is a bare CR;
	// otherwise the next read decides, unless the run fills the whole buffer (then it counts as
	// a bare CR). A line that is already too long is left to longLine.
	if lr.err != nil || (lr.full() && cr <= lr.max) {
		return cr, 1, true
	}
	return 0, 0, false
}

// longLine handles a line longer than max: it keeps the first max bytes, then reads and discards
// the rest of the line, counting it.
func (lr *lineReader) longLine() line {
	if lr.head == nil {
		lr.head = make([]byte, lr.max)
	}
	copy(lr.head, lr.buf[lr.start:lr.start+lr.max])
	l := line{b: lr.head, full: int64(lr.max)}
	lr.start += lr.max
	lr.raw += int64(lr.max)
	for {
		data := lr.buf[lr.start:lr.end]
		if i, n, found := lr.findBreak(data); found {
			l.full += int64(i)
			l.eol = true
			lr.start += i + n
			lr.raw += int64(i + n)
			return l
		}
		// Discard everything except a trailing CR run, which may be the start of a CRLF.
		keep := 0
		for keep < len(data) && data[len(data)-1-keep] == '\r' {
			keep++
		}
		if lr.err != nil {
			keep = 0
		}
		drop := len(data) - keep
		l.full += int64(drop)
		lr.start += drop
		lr.raw += int64(drop)
		if lr.err != nil {
			return l
		}
		lr.fill()
	}
}

// fill reads more input into the buffer, moving unread bytes to its front first.
func (lr *lineReader) fill() {
	if lr.start > 0 {
		n := copy(lr.buf, lr.buf[lr.start:lr.end])
		lr.start, lr.end = 0, n
	}
	if lr.end == len(lr.buf) {
		if len(lr.buf) >= lr.max+crLookahead {
			return // full: the caller handles a long line or a long CR run
		}
		grown := make([]byte, min(2*len(lr.buf), lr.max+crLookahead))
		copy(grown, lr.buf[:lr.end])
		lr.buf = grown
	}
	// Retry a few times on (0, nil) reads, as io.ReadAtLeast does implicitly.
	for tries := 0; tries < 100; tries++ {
		n, err := lr.r.Read(lr.buf[lr.end:])
		lr.end += n
		if err != nil {
			lr.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	lr.err = io.ErrNoProgress
}

// ioErr returns the input's I/O error, or nil when it ended normally.
func (lr *lineReader) ioErr() error {
	if lr.err == io.EOF {
		return nil
	}
	return lr.err
}
