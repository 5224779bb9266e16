package reply

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailhook/mailhook/message"
)

// guardMessage parses a message with the headers of a plain human mail to us, with extra header
// lines added and the named headers removed.
func guardMessage(t *testing.T, extra string, drop ...string) *message.Message {
	t.Helper()
	base := []string{
		"Return-Path: <alice@example.com>",
		"Received: from mx.example.com by mx.us.test; Mon, 2 Mar 2026 10:00:00 +0000",
		"From: Alice <alice@example.com>",
		"To: Support <help@us.test>",
		"Subject: Question",
		"Date: Mon, 2 Mar 2026 10:00:00 +0000",
		"Message-ID: <q1@example.com>",
	}
	var lines []string
	for _, l := range base {
		name, _, _ := strings.Cut(l, ":")
		keep := true
		for _, d := range drop {
			if strings.EqualFold(d, name) {
				keep = false
			}
		}
		if keep {
			lines = append(lines, l)
		}
	}
	var raw string
	if extra == "" {
		raw = strings.Join(lines, "\r\n") + "\r\n\r\nHello\r\n"
	} else {
		raw = strings.Join(lines, "\r\n") + "\r\n" + strings.TrimSuffix(extra, "\r\n") + "\r\n\r\nHello\r\n"
	}
	m, err := message.Parse(strings.NewReader(raw), message.Limits{})
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return m
}

// Every case that must never get an auto-reply (automated, list and bulk mail, bounces, mailer
// daemons, our own messages, mail not addressed to us, loops), and the cases that must still reply.
func TestCheckReply(t *testing.T) {
	policy := Policy{OwnAddresses: []string{"Help@US.test", "me@us.test"}}
	manyReceived := strings.Repeat("Received: from hop by hop; Mon, 2 Mar 2026 10:00:00 +0000\r\n", 30)
	tests := []struct {
		name   string
		extra  string
		drop   []string
		policy *Policy
		to     string // expected recipient when a reply is due
		skip   string
	}{
		{name: "human mail to us", to: "alice@example.com"},
		{name: "auto-submitted no", extra: "Auto-Submitted: no", to: "alice@example.com"},
		{name: "auto-submitted NO with comment", extra: "Auto-Submitted: NO (a person wrote this)", to: "alice@example.com"},
		// Auto-Submitted other than "no".
		{name: "auto-replied", extra: "Auto-Submitted: auto-replied", skip: SkipAutoSubmitted},
		{name: "auto-generated", extra: "Auto-Submitted: auto-generated", skip: SkipAutoSubmitted},
		{name: "auto-submitted upper case with parameter", extra: "Auto-Submitted: AUTO-NOTIFIED; owner-email=x@y", skip: SkipAutoSubmitted},
		{name: "auto-submitted unknown value", extra: "Auto-Submitted: whatever", skip: SkipAutoSubmitted},
		{name: "auto-submitted no, then another", extra: "Auto-Submitted: no\r\nAuto-Submitted: auto-generated", skip: SkipAutoSubmitted},
		{name: "auto-submitted comment hiding no", extra: "Auto-Submitted: (no) auto-replied", skip: SkipAutoSubmitted},
		// A null or missing Return-Path.
		{name: "null return path", extra: "Return-Path: <>", drop: []string{"Return-Path"}, skip: SkipNullReturnPath},
		{name: "null return path with spaces", extra: "Return-Path: < >", drop: []string{"Return-Path"}, skip: SkipNullReturnPath},
		{name: "no return path", drop: []string{"Return-Path"}, skip: SkipNoReturnPath},
		{name: "return path that is a list", extra: "Return-Path: <a@x.test>, <b@y.test>", drop: []string{"Return-Path"}, skip: SkipBadReturnPath},
		// Bulk, list and junk precedence.
		{name: "precedence bulk", extra: "Precedence: bulk", skip: SkipPrecedence},
		{name: "precedence list", extra: "Precedence: List", skip: SkipPrecedence},
		{name: "precedence junk", extra: "Precedence: junk (spam)", skip: SkipPrecedence},
		{name: "precedence first-class is fine", extra: "Precedence: first-class", to: "alice@example.com"},
		// Mailing-list headers.
		{name: "list-id", extra: "List-Id: <dev.lists.example.com>", skip: SkipListHeader},
		{name: "list-help", extra: "List-Help: <mailto:help@lists.example.com>", skip: SkipListHeader},
		{name: "list-subscribe", extra: "List-Subscribe: <mailto:sub@lists.example.com>", skip: SkipListHeader},
		{name: "list-unsubscribe", extra: "List-Unsubscribe: <https://example.com/u>", skip: SkipListHeader},
		{name: "list-post", extra: "List-Post: <mailto:dev@lists.example.com>", skip: SkipListHeader},
		{name: "list-owner", extra: "List-Owner: <mailto:owner@lists.example.com>", skip: SkipListHeader},
		{name: "list-archive", extra: "List-Archive: <https://lists.example.com/>", skip: SkipListHeader},
		{name: "list header in lower case", extra: "list-id: x", skip: SkipListHeader},
		// Mailer daemons and other suppressed senders.
		{name: "mailer-daemon", extra: "Return-Path: <MAILER-DAEMON@mx.example.com>", drop: []string{"Return-Path"}, skip: SkipSuppressed},
		{name: "listserv", extra: "Return-Path: <listserv@lists.example.com>", drop: []string{"Return-Path"}, skip: SkipSuppressed},
		{name: "majordomo", extra: "Return-Path: <Majordomo@lists.example.com>", drop: []string{"Return-Path"}, skip: SkipSuppressed},
		{name: "-request", extra: "Return-Path: <dev-request@lists.example.com>", drop: []string{"Return-Path"}, skip: SkipSuppressed},
		{name: "owner-", extra: "Return-Path: <owner-dev@lists.example.com>", drop: []string{"Return-Path"}, skip: SkipSuppressed},
		{name: "suppressed From with a normal return path", extra: "From: MAILER-DAEMON@mx.example.com", drop: []string{"From"}, skip: SkipSuppressed},
		{name: "configured pattern", policy: &Policy{OwnAddresses: policy.OwnAddresses, Suppress: append(DefaultSuppress(), "*@example.com")}, skip: SkipSuppressed},
		{name: "owner in the domain only is fine", extra: "Return-Path: <bob@owner-example.com>", drop: []string{"Return-Path"}, to: "bob@owner-example.com"},
		// Mail from ourselves.
		{name: "return path is us", extra: "Return-Path: <ME@us.test>", drop: []string{"Return-Path"}, skip: SkipOwnSender},
		{name: "from is us", extra: "From: help@us.test", drop: []string{"From"}, skip: SkipOwnSender},
		// Mail that does not name one of our addresses.
		{name: "not addressed to us", extra: "To: someone@else.test", drop: []string{"To"}, skip: SkipNotAddressed},
		{name: "no recipients at all", drop: []string{"To"}, skip: SkipNotAddressed},
		{name: "us in cc", extra: "To: someone@else.test\r\nCc: \"Me\" <me@us.test>", drop: []string{"To"}, to: "alice@example.com"},
		{name: "us in bcc", extra: "To: someone@else.test\r\nBcc: me@us.test", drop: []string{"To"}, to: "alice@example.com"},
		{name: "us in resent-to", extra: "To: someone@else.test\r\nResent-To: x@y.test, HELP@us.test", drop: []string{"To"}, to: "alice@example.com"},
		{name: "us in resent-cc", extra: "To: someone@else.test\r\nResent-Cc: <me@us.test>", drop: []string{"To"}, to: "alice@example.com"},
		{name: "us in resent-bcc", extra: "To: someone@else.test\r\nResent-Bcc: me@us.test", drop: []string{"To"}, to: "alice@example.com"},
		{name: "our address only in an encoded display name", extra: "To: =?utf-8?q?help=40us.test?= <someone@else.test>", drop: []string{"To"}, skip: SkipNotAddressed},
		{name: "no own addresses configured", policy: &Policy{}, skip: SkipNotAddressed},
		// Our own messages.
		{name: "our loop marker", extra: LoopHeader + ": help@us.test", skip: SkipOwnMessage},
		{name: "another instance's loop marker", extra: LoopHeader + ": other@else.test", to: "alice@example.com"},
		// Mail that has travelled too many hops (a loop).
		{name: "30 more received headers", extra: manyReceived, skip: SkipTooManyReceived},
		{name: "exactly the threshold", extra: manyReceived, policy: &Policy{OwnAddresses: policy.OwnAddresses, MaxReceived: 31}, to: "alice@example.com"},
		// The Return-Path, not From or Reply-To.
		{name: "reply-to is ignored", extra: "Reply-To: other@example.org", to: "alice@example.com"},
		{name: "return path differs from from", extra: "Return-Path: <bounces+alice@mailer.example.com>", drop: []string{"Return-Path"}, to: "bounces+alice@mailer.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := policy
			if tc.policy != nil {
				p = *tc.policy
			}
			m := guardMessage(t, tc.extra, tc.drop...)
			to, skip := Check(m, p)
			if to != tc.to || skip != tc.skip {
				t.Errorf("CheckReply = (%q, %q), want (%q, %q)", to, skip, tc.to, tc.skip)
			}
			if (skip == "") == (to == "") {
				t.Errorf("exactly one of recipient and reason must be set: (%q, %q)", to, skip)
			}
		})
	}
}

func TestIsOwnMessage(t *testing.T) {
	m := guardMessage(t, LoopHeader+": Help@us.test")
	if !IsOwnMessage(m, []string{"help@us.test"}) {
		t.Error("marker with our address not recognised")
	}
	if IsOwnMessage(m, []string{"me@us.test"}) {
		t.Error("marker of another address taken for ours")
	}
	if IsOwnMessage(guardMessage(t, ""), []string{"help@us.test"}) {
		t.Error("unmarked message taken for ours")
	}
}

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pat, s string
		want   bool
	}{
		{"mailer-daemon*", "mailer-daemon@x", true},
		{"*-request@*", "dev-request@lists.x", true},
		{"*-request@*", "dev-requests@lists.x", false},
		{"owner-*", "owner-", true},
		{"owner-*", "xowner-a", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"*", "", true},
		{"", "x", false},
	} {
		if got := globMatch(tc.pat, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pat, tc.s, got)
		}
	}
}

func ExampleCheck() {
	raw := "Return-Path: <alice@example.com>\r\nFrom: alice@example.com\r\nTo: help@us.test\r\n" +
		"Auto-Submitted: auto-replied\r\n\r\nOut of office\r\n"
	m, _ := message.Parse(strings.NewReader(raw), message.Limits{})
	fmt.Println(Check(m, Policy{OwnAddresses: []string{"help@us.test"}}))
	// Output:  auto_submitted
}
