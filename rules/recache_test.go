package rules

import (
	"fmt"
	"strings"
	"testing"
)

func TestRECacheBound(t *testing.T) {
	c := newRECache(4, reCacheBytes)
	for i := range 10 {
		if ok, err := c.match(fmt.Sprintf("^a{%d}$", i), strings.Repeat("a", i)); !ok || err != nil {
			t.Fatalf("pattern %d: %v, %v", i, ok, err)
		}
		if n, want := c.len(), min(i+1, 4); n != want {
			t.Fatalf("after %d patterns the cache holds %d; want %d", i+1, n, want)
		}
	}
	// The most recently used patterns stay; using one keeps it over a newer one.
	first, _ := c.get("^a{6}$")
	c.get("^new1$")
	c.get("^new2$")
	c.get("^new3$")
	if again, _ := c.get("^a{6}$"); again != first {
		t.Error("a used pattern was evicted before older ones")
	}
	if _, ok := c.items["^a{7}$"]; ok {
		t.Error("least recently used pattern still cached")
	}
}

func TestRECacheErrors(t *testing.T) {
	c := newRECache(4, reCacheBytes)
	_, err1 := c.get("(")
	_, err2 := c.get("(")
	if err1 == nil || err1 != err2 {
		t.Errorf("bad pattern: errors %v, %v; want the same cached error", err1, err2)
	}
	long := strings.Repeat("a", maxPatternBytes+1)
	if _, err := c.get(long); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("over-long pattern: %v", err)
	}
	if c.len() != 1 {
		t.Errorf("cache holds %d patterns; want 1 (the over-long one is not cached)", c.len())
	}
}

// TestSetREBound checks that the cache a Set uses for re() stays bounded when every message
// brings a new pattern, and that each Set has its own.
func TestSetREBound(t *testing.T) {
	s, err := Compile([]Spec{{Name: "dyn", When: `re("^" + subject + "$", subject)`}})
	if err != nil {
		t.Fatal(err)
	}
	other, err := Compile([]Spec{{Name: "dyn", When: `re(subject, subject)`}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range reCacheSize + 50 {
		env := testEnv()
		env.Subject = fmt.Sprintf("s%d", i)
		if got, errs := s.Match(env); len(got) != 1 || len(errs) != 0 {
			t.Fatalf("message %d: matched %v, errors %v", i, got, errs)
		}
	}
	if n := s.re.len(); n != reCacheSize {
		t.Errorf("cache holds %d patterns; want the bound %d", n, reCacheSize)
	}
	if n := other.re.len(); n != 0 {
		t.Errorf("another Set's cache holds %d patterns; want 0", n)
	}
}
