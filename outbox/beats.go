package outbox

import (
	"sync"
	"sync/atomic"
	"time"
)

// beats records, per running lane loop, when it last went round.
type beats struct {
	mu      sync.Mutex
	running map[*beat]struct{}
}

// beat is one lane loop's last round, in Unix nanoseconds.
type beat struct{ at atomic.Int64 }

// join registers a loop that starts now; the loop calls beat on every round and leave when it
// ends.
func (b *beats) join() *beat {
	hb := &beat{}
	hb.beat()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running == nil {
		b.running = map[*beat]struct{}{}
	}
	b.running[hb] = struct{}{}
	return hb
}

func (b *beats) leave(hb *beat) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.running, hb)
}

func (hb *beat) beat() { hb.at.Store(time.Now().UnixNano()) }

func (b *beats) oldest() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var min int64
	for hb := range b.running {
		if at := hb.at.Load(); min == 0 || at < min {
			min = at
		}
	}
	if min == 0 {
		return time.Time{}
	}
	return time.Unix(0, min)
}
