package watcher

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestSearchUIDs: a 0 in a SEARCH answer (go-imap reads it as "*" and AllUIDs panics) is ignored,
// and a range wider than the mailbox is refused instead of expanded (AllUIDs allocates it whole:
// 1:4294967295 is 16 GiB).
func TestSearchUIDs(t *testing.T) {
	data := &imap.SearchData{All: imap.UIDSet{{Start: 0, Stop: 0}, {Start: 9, Stop: 7}, {Start: 4294967295, Stop: 4294967295}, {Start: 3, Stop: 3}}}
	got, err := searchUIDs(data, 3, 100)
	if err != nil || !slices.Equal(got, []uint32{7, 8, 9, 4294967295}) {
		t.Errorf("got %v, %v; want [7 8 9 4294967295]", got, err)
	}
	wide := &imap.SearchData{All: imap.UIDSet{{Start: 1, Stop: 4294967295}}}
	if got, err := searchUIDs(wide, 0, 2000); err == nil {
		t.Errorf("1:4294967295 in a mailbox of 2000: %d UIDs, no error", len(got))
	}
	if got, err := searchUIDs(wide, 4294967290, 2000); err != nil || len(got) != 5 {
		t.Errorf("above 4294967290: %v, %v; want the 5 UIDs up to the maximum", got, err)
	}
	if got, err := searchUIDs(&imap.SearchData{}, 0, 10); err != nil || len(got) != 0 {
		t.Errorf("empty answer: %v, %v", got, err)
	}
}
