package rules

import (
	"container/list"
	"fmt"
	"regexp"
	"regexp/syntax"
	"sync"
)

// Patterns built at run time (re(), and `matches` with a computed pattern) come from mail, so an
// attacker chooses them. Go's regexp runs in time linear in the input and in the size of the
// compiled program, but neither expr nor regexp can be interrupted, and a timer would make
// `mailhook test` and the daemon disagree under load; so these bounds are deterministic and
// checked before any work is done:
//
//   - a pattern has at most maxPatternBytes bytes;
//   - its compiled program has at most maxProgramInsts instructions and maxProgramBytes of
//     memory (estimated from the parsed pattern, pessimistically, before compiling:
//     `(?:x?){1000}` is 12 bytes but 2,000 instructions);
//   - one use costs at most maxMatchCost units of program size × (input bytes + 1), the work the
//     matcher does in the worst case;
//   - the cache of compiled patterns holds at most reCacheSize patterns and reCacheBytes of
//     estimated memory.
//
// A pattern over a bound is an error (a *BoundError); the rule that used it does not match.
const (
	// reCacheSize bounds how many compiled patterns one Set keeps. A rule that builds a new
	// pattern per message (say, from the subject) churns the cache but never grows it.
	reCacheSize = 256
	// reCacheBytes bounds the estimated memory of the compiled patterns one Set keeps (see
	// reEntryBytes).
	reCacheBytes = 16 << 20
	// maxPatternBytes bounds a pattern built at run time.
	maxPatternBytes = 4096
	// maxProgramInsts bounds the compiled program of a pattern built at run time: a program
	// keeps about 50–250 bytes per instruction, and matching costs time in proportion to it.
	// A 4 KiB pattern of literal text is about 4,100 instructions.
	maxProgramInsts = 8192
	// maxProgramBytes bounds the estimated memory of the compiled program of a pattern built at
	// run time (see compiledRE.bytes): 8,192 instructions and some character classes.
	maxProgramBytes = 4 << 20
	// maxMatchCost bounds one use of a pattern built at run time, in units of program
	// instructions × (input bytes + 1): Go's matcher advances at most every instruction once per
	// input byte. The slowest patterns take 5–12 ns per unit (BenchmarkREBound), so a use takes
	// at most about 0.1–0.2 s; a 30-instruction pattern may still scan a 512 KiB body.
	maxMatchCost = 1 << 24
)

// BoundError is the error of a pattern built at run time that is over one of the bounds above.
// Match returns it wrapped in the rule's *RuleError.
type BoundError struct {
	What  string // "pattern bytes", "program instructions", "program bytes" or "match cost"
	Value int64
	Limit int64
}

func (e *BoundError) Error() string {
	switch e.What {
	case "pattern bytes":
		return fmt.Sprintf("pattern is %d bytes, more than the limit of %d", e.Value, e.Limit)
	case "program instructions":
		return fmt.Sprintf("pattern compiles to %d instructions, more than the limit of %d", e.Value, e.Limit)
	case "program bytes":
		return fmt.Sprintf("compiled pattern needs %d bytes, more than the limit of %d", e.Value, e.Limit)
	default:
		return fmt.Sprintf("match cost (program instructions × input bytes) is %d, more than the limit of %d", e.Value, e.Limit)
	}
}

// compiledRE is a compiled pattern built at run time, with the estimated size its bounds are
// computed from.
type compiledRE struct {
	re *regexp.Regexp
	// insts is a pessimistic estimate of the compiled program's instructions, at least 1 and at
	// least the pattern's length in bytes.
	insts int64
	// classBytes is the memory of its character classes' ranges (see classBytes).
	classBytes int64
}

// check returns a *BoundError when running the pattern passes times over input would cost more
// than maxMatchCost: passes is 1 for a match or the first match (with or without groups); a
// search for up to n matches makes at most 2n+1 passes (each match may scan to the end, and an
// empty match right after the previous one is retried one rune further).
func (p *compiledRE) check(input string, passes int) error {
	cost := p.insts * (int64(len(input)) + 1)
	if passes > 1 {
		cost *= int64(passes)
	}
	if cost > maxMatchCost || cost < 0 {
		return &BoundError{What: "match cost", Value: cost, Limit: maxMatchCost}
	}
	return nil
}

// reCache is a bounded, least-recently-used cache of compiled regular expressions, safe for
// concurrent use. Compile errors are cached too, so a broken pattern costs one compile.
type reCache struct {
	max      int   // patterns
	maxBytes int64 // estimated bytes

	mu    sync.Mutex
	ll    *list.List // of *reEntry, most recently used first
	items map[string]*list.Element
	bytes int64 // estimated bytes of the entries in ll
}

type reEntry struct {
	pattern string
	p       *compiledRE
	err     error
	bytes   int64
}

func newRECache(max int, maxBytes int64) *reCache {
	return &reCache{max: max, maxBytes: maxBytes, ll: list.New(), items: make(map[string]*list.Element, max)}
}

// get returns the compiled pattern, compiling and caching it on a miss. A pattern over the
// pattern-bytes or program bound gives a *BoundError. The compile runs outside the lock, so a
// slow compile never blocks other rules; two goroutines missing on the same pattern at once
// both compile it, and the second store is a no-op.
func (c *reCache) get(pattern string) (*compiledRE, error) {
	c.mu.Lock()
	if el, ok := c.items[pattern]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*reEntry)
		c.mu.Unlock()
		return e.p, e.err
	}
	c.mu.Unlock()

	if len(pattern) > maxPatternBytes {
		// Refused before parsing and not cached, so no key in the cache is longer.
		return nil, &BoundError{What: "pattern bytes", Value: int64(len(pattern)), Limit: maxPatternBytes}
	}
	p, err := compilePattern(pattern)
	e := &reEntry{pattern: pattern, p: p, err: err, bytes: reEntryBytes(pattern, p)}

	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[pattern]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*reEntry)
		return e.p, e.err
	}
	c.items[pattern] = c.ll.PushFront(e)
	c.bytes += e.bytes
	for c.ll.Len() > c.max || (c.bytes > c.maxBytes && c.ll.Len() > 1) {
		last := c.ll.Back()
		c.ll.Remove(last)
		le := last.Value.(*reEntry)
		delete(c.items, le.pattern)
		c.bytes -= le.bytes
	}
	return p, err
}

// compilePattern parses pattern the way regexp.Compile does, refuses it when its program would
// be over maxProgramInsts, and compiles it.
func compilePattern(pattern string) (*compiledRE, error) {
	tree, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		_, err = regexp.Compile(pattern) // regexp's own error text, as `matches` reports it
		if err == nil {
			err = fmt.Errorf("parse %q failed", pattern) // unreachable: regexp parses with the same flags
		}
		return nil, err
	}
	insts := max(programSize(tree)+2, int64(len(pattern))) // +2: the program's fail and match
	if insts > maxProgramInsts {
		return nil, &BoundError{What: "program instructions", Value: insts, Limit: maxProgramInsts}
	}
	p := &compiledRE{insts: insts, classBytes: classBytes(tree)}
	if n := p.bytes(pattern); n > maxProgramBytes {
		return nil, &BoundError{What: "program bytes", Value: n, Limit: maxProgramBytes}
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, err
	}
	p.re = re
	return p, nil
}

// bytes estimates the memory the compiled pattern keeps: the pattern text (in regexp and as the
// cache's key), per instruction the program and the state of one matcher, and the ranges of its
// character classes (`\pL` alone is 5 KiB, counted twice). Measured with Go 1.26 at 50–250 bytes per
// instruction beside the classes (BenchmarkRECacheMemory).
func (p *compiledRE) bytes(pattern string) int64 {
	const perEntry, perInst = 512, 256
	return perEntry + 2*int64(len(pattern)) + perInst*p.insts + p.classBytes
}

// classBytes is the memory of the rune ranges of re's character classes, each counted once
// however often a repeat copies it.
func classBytes(re *syntax.Regexp) int64 {
	var n int64
	if re.Op == syntax.OpCharClass {
		n = 8 * int64(len(re.Rune)) // the parsed class and the program's copy
	}
	for _, sub := range re.Sub {
		n += classBytes(sub)
	}
	return n
}

// programSize is an upper bound of the instructions the program for re compiles to, computed
// on the parsed tree the way regexp/syntax estimates it (a repeat counts its body once per
// copy), so that an oversized program is refused before it is built. It saturates instead of
// overflowing.
func programSize(re *syntax.Regexp) int64 {
	const limit = 1 << 40
	var size int64
	switch re.Op {
	case syntax.OpLiteral:
		size = int64(len(re.Rune))
	case syntax.OpCapture, syntax.OpStar:
		size = 2 + programSize(re.Sub[0])
	case syntax.OpPlus, syntax.OpQuest:
		size = 1 + programSize(re.Sub[0])
	case syntax.OpConcat, syntax.OpAlternate:
		for _, sub := range re.Sub {
			size = min(limit, size+programSize(sub))
		}
		if re.Op == syntax.OpAlternate && len(re.Sub) > 1 {
			size += int64(len(re.Sub)) - 1
		}
	case syntax.OpRepeat:
		sub := programSize(re.Sub[0])
		n := int64(re.Max)
		if re.Max == -1 {
			n = int64(re.Min) + 1
		}
		size = n*sub + n + 1
	}
	return min(limit, max(1, size))
}

// reEntryBytes estimates the memory a cache entry keeps: the compiled pattern's, or for a
// failed compile its key and error.
func reEntryBytes(pattern string, p *compiledRE) int64 {
	if p == nil {
		return 512 + 2*int64(len(pattern))
	}
	return p.bytes(pattern)
}

// len returns the number of cached patterns.
func (c *reCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// size returns the estimated bytes of the cached patterns.
func (c *reCache) size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// compiled returns the compiled pattern, from the cache or compiled now, once the bounds admit
// running it passes times over input (see compiledRE.check): the one entry point for helpers that
// run a pattern built at run time. The error is the pattern's compile error or a *BoundError.
func (c *reCache) compiled(pattern, input string, passes int) (*regexp.Regexp, error) {
	p, err := c.get(pattern)
	if err != nil {
		return nil, err
	}
	if err := p.check(input, passes); err != nil {
		return nil, err
	}
	return p.re, nil
}

// match reports whether s matches pattern, in the manner of expr's `matches` operator, within
// the bounds.
func (c *reCache) match(pattern, s string) (bool, error) {
	re, err := c.compiled(pattern, s, 1)
	if err != nil {
		return false, err
	}
	return re.MatchString(s), nil
}
