package watcher

import (
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// searchUIDs returns the UIDs of a UID SEARCH answer above last, ascending and distinct, at most
// limit of them. It reads the answer's ranges itself: go-imap's SearchData.AllUIDs reads a 0 in
// the answer as "*" and then panics ("dynamic number set"), and expands a range such as
// 1:4294967295 into memory, so one hostile line would kill or stall the process. A UID of 0 is
// not a UID (RFC 3501 §2.3.1.1): ranges naming it are ignored. More than limit UIDs (the
// mailbox's message count and some room for mail arriving meanwhile) is an error.
func searchUIDs(data *imap.SearchData, last uint32, limit int) ([]uint32, error) {
	set, _ := data.All.(imap.UIDSet)
	var uids []uint32
	for _, r := range set {
		lo, hi := uint32(r.Start), uint32(r.Stop)
		if lo == 0 || hi == 0 {
			continue
		}
		if lo > hi {
			lo, hi = hi, lo
		}
		lo = max(lo, last+1)
		for u := uint64(lo); u <= uint64(hi); u++ {
			if len(uids) >= limit {
				return nil, fmt.Errorf("server answered more than %d UIDs above %d for a mailbox of fewer messages", limit, last)
			}
			uids = append(uids, uint32(u))
		}
	}
	return uids, nil
}

// searchLimit is how many UIDs a search of the selected mailbox may return: its message count,
// and room for 1,024 more arriving while the search runs.
func searchLimit(mbox *imapclient.SelectedMailbox) int {
	n := 0
	if mbox != nil {
		n = int(mbox.NumMessages)
	}
	return n + 1024
}
