package dispatch

import (
	"context"
	"slices"
	"time"

	"github.com/mailhook/mailhook/store"
)

// Report is the state of one endpoint, a line of `mailhook webhooks list`.
type Report struct {
	Name         string     `json:"name"`
	Configured   bool       `json:"configured"`
	Enabled      bool       `json:"enabled"`
	DisabledAt   *time.Time `json:"disabled_at"`
	Reason       string     `json:"reason"`
	FailingSince *time.Time `json:"failing_since"`
	Pending      int        `json:"pending"`
	InFlight     int        `json:"in_flight"`
	Held         int        `json:"held"`
	Dead         int        `json:"dead"`
}

// ReportStore is what Reports reads (of store.Backend).
type ReportStore interface {
	Endpoints(ctx context.Context) ([]store.EndpointState, error)
	TargetCounts(ctx context.Context, kind string) (map[string]map[string]int, error)
}

var _ ReportStore = store.Backend(nil)

// Reports describes the configured webhooks (names, in configuration order), then any other
// endpoint the store knows (a webhook removed from the configuration, with jobs or a state left).
func Reports(ctx context.Context, st ReportStore, names []string) ([]Report, error) {
	states, err := st.Endpoints(ctx)
	if err != nil {
		return nil, err
	}
	counts, err := st.TargetCounts(ctx, store.KindWebhook)
	if err != nil {
		return nil, err
	}
	byName := map[string]store.EndpointState{}
	for _, s := range states {
		byName[s.Name] = s
	}
	configured := map[string]bool{}
	for _, n := range names {
		configured[n] = true
	}
	var others []string
	for name := range byName {
		if !configured[name] {
			others = append(others, name)
		}
	}
	for name := range counts {
		if !configured[name] && !slices.Contains(others, name) {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	var out []Report
	for _, name := range append(names, others...) {
		s, c := byName[name], counts[name]
		r := Report{Name: name, Configured: configured[name], Enabled: !s.Disabled(), Reason: s.Reason,
			Pending: c[store.StatePending], InFlight: c[store.StateInFlight], Held: c[store.StateHeld], Dead: c[store.StateDead]}
		if s.Disabled() {
			r.DisabledAt = &s.DisabledAt
		}
		if !s.FailingSince.IsZero() {
			r.FailingSince = &s.FailingSince
		}
		out = append(out, r)
	}
	return out, nil
}
