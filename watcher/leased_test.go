package watcher

import "testing"

// A Leased is on standby until its watcher runs, shows that watcher's status while it runs, and
// is on standby again once it has returned.
func TestLeasedStatus(t *testing.T) {
	l := NewLeased(Config{}, nil)
	if st := l.Status(); st.State != StateStandby || st.Since.IsZero() {
		t.Fatalf("new Leased status = %+v, want standby with a since", st)
	}
	w := &Watcher{}
	w.status.State = StateIdle
	l.set(w)
	if st := l.Status(); st.State != StateIdle {
		t.Fatalf("status while a watcher runs = %q, want its %q", st.State, StateIdle)
	}
	l.set(nil)
	if st := l.Status(); st.State != StateStandby {
		t.Fatalf("status after the watcher returned = %q, want standby", st.State)
	}
}
