package store

import (
	"strings"
	"testing"
)

func TestJobIDGolden(t *testing.T) {
	// Pinned forever: this id is the webhook-id receivers deduplicate on.
	const want = "msg_ewedoud2bwryb2wwy4aphjr6ne"
	if got := JobID("personal", "INBOX", 1795689278, 4711, "ci-failures", 0); got != want {
		t.Fatalf("JobID = %q, want %q", got, want)
	}

	base := JobID("a", "b", 1, 2, "r", 0)
	if len(base) != len("msg_")+26 || strings.ToLower(base) != base || strings.Contains(base, "=") {
		t.Errorf("JobID %q: want msg_ + 26 lower-case base32 characters", base)
	}
	variants := map[string]string{
		"account":     JobID("x", "b", 1, 2, "r", 0),
		"mailbox":     JobID("a", "x", 1, 2, "r", 0),
		"uidvalidity": JobID("a", "b", 3, 2, "r", 0),
		"uid":         JobID("a", "b", 1, 3, "r", 0),
		"rule":        JobID("a", "b", 1, 2, "x", 0),
		"action":      JobID("a", "b", 1, 2, "r", 1),
		"boundary":    JobID("ab", "", 1, 2, "r", 0),
	}
	for field, id := range variants {
		if id == base {
			t.Errorf("changing %s does not change the id", field)
		}
	}
	if JobID("ab", "c", 1, 2, "r", 0) == JobID("a", "bc", 1, 2, "r", 0) {
		t.Error(`("ab","c") and ("a","bc") collide: fields are not length-prefixed`)
	}
}

func TestReplayJobID(t *testing.T) {
	orig := JobID("acct", "INBOX", 7, 42, "ci", 0)
	a := ReplayJobID("20261126T100000Z", orig)
	if a == orig || a != ReplayJobID("20261126T100000Z", orig) || len(a) != len(orig) || a[:4] != "msg_" {
		t.Fatalf("replay id %q of %q", a, orig)
	}
	for _, other := range []string{
		ReplayJobID("20261126T100001Z", orig),
		ReplayJobID("20261126T100000Z", JobID("acct", "INBOX", 7, 43, "ci", 0)),
		ReplayJobID("", orig),
	} {
		if other == a {
			t.Errorf("replay ids collide: %q", a)
		}
	}
	// Golden: the id is part of the webhook contract (webhook-id), it must never change.
	// Computed independently: python3 hashlib over the length-prefixed fields.
	if got, want := ReplayJobID("r1", "msg_x"), "msg_yvdgkg7iauxibt4s7yjr6hjh6e"; got != want {
		t.Errorf("ReplayJobID = %q", got)
	}
}
