package rules

import (
	"container/list"
	"fmt"
	"regexp"
	"sync"
)

const (
	// reCacheSize bounds how many compiled patterns one Set keeps for re() and for `matches`
	// with a pattern built at run time. A rule that builds a new pattern per message (say, from
	// the subject) churns the cache but never grows it.
	reCacheSize = 256
	// maxPatternBytes bounds a pattern built at run time. Go's regexp is linear in the input,
	// but compiling costs time and memory proportional to the pattern, and a pattern built from
	// message content could be as large as the text cap.
	maxPatternBytes = 4096
)

// reCache is a bounded, least-recently-used cache of compiled regular expressions, safe for
// concurrent use. Compile errors are cached too, so a broken pattern costs one compile.
type reCache struct {
	max int

	mu    sync.Mutex
	ll    *list.List // of *reEntry, most recently used first
	items map[string]*list.Element
}

type reEntry struct {
	pattern string
	re      *regexp.Regexp
	err     error
}

func newRECache(max int) *reCache {
	return &reCache{max: max, ll: list.New(), items: make(map[string]*list.Element, max)}
}

// get returns the compiled pattern, compiling and caching it on a miss. The compile runs outside
// the lock, so a slow compile never blocks other rules; two goroutines missing on the same
// pattern at once both compile it, and the second store is a no-op.
func (c *reCache) get(pattern string) (*regexp.Regexp, error) {
	c.mu.Lock()
	if el, ok := c.items[pattern]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*reEntry)
		c.mu.Unlock()
		return e.re, e.err
	}
	c.mu.Unlock()

	if len(pattern) > maxPatternBytes {
		// Refused before compiling and not cached, so the cache holds at most
		// reCacheSize × maxPatternBytes of keys.
		return nil, fmt.Errorf("pattern is %d bytes, more than the limit of %d", len(pattern), maxPatternBytes)
	}
	re, err := regexp.Compile(pattern)

	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[pattern]; ok {
		c.ll.MoveToFront(el)
		e := el.Value.(*reEntry)
		return e.re, e.err
	}
	c.items[pattern] = c.ll.PushFront(&reEntry{pattern: pattern, re: re, err: err})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.items, last.Value.(*reEntry).pattern)
	}
	return re, err
}

// len returns the number of cached patterns.
func (c *reCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// match reports whether s matches pattern, in the manner of expr's `matches` operator.
func (c *reCache) match(pattern, s string) (bool, error) {
	re, err := c.get(pattern)
	if err != nil {
		return false, err
	}
	return re.MatchString(s), nil
}
