package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
)

// Three replicas of the built binary share one PostgreSQL store and watch six mailboxes on one
// Dovecot: each mailbox is watched by one replica, every message is delivered under one
// webhook-id, exactly once while no replica changes; a SIGKILLed replica's mailboxes are taken
// over, a SIGTERMed one hands them over, and mail keeps flowing.
func TestReplicasOnPostgres(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	boxes := []string{"INBOX", "b1", "b2", "b3", "b4", "b5"}
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{Password: testIMAPPassword, Mailboxes: boxes[1:]})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	led := ledger{recv: recv}

	var ds []*daemon
	var cfgs []string
	var envs [][]string
	for range 3 {
		dir := t.TempDir()
		cfg, env := writeConfig(t, dir, dc.Addr(), dc.User(), dc.Password(), recv.URL()+"/hook", func(p *cfgParams) {
			p.Mailbox = strings.Join(boxes, ", ")
		})
		f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fmt.Fprintf(f, "store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n  lease_ttl: 5s\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		env = append(env, "MAILHOOK_DSN="+dsn)
		cfgs, envs = append(cfgs, cfg), append(envs, env)
		ds = append(ds, startDaemon(t, cfg, env...))
	}

	ctx := context.Background()
	view, err := postgres.Open(ctx, dsn, store.Options{}, postgres.Options{}) // migrates if no replica has yet
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	// settled: every lease live, held by a running replica (its id holds the process id), none
	// holding more than ⌈mailboxes / replicas⌉ + 1, and every mailbox checkpointed.
	settled := func(alive int) func() bool {
		return func() bool {
			running := map[string]bool{}
			for _, d := range ds {
				select {
				case <-d.done:
				default:
					running[fmt.Sprintf("-%d-", d.cmd.Process.Pid)] = true
				}
			}
			ls, err := view.LeaseStates(ctx)
			if err != nil || len(ls) != len(boxes) {
				return false
			}
			by := map[string]int{}
			for _, l := range ls {
				if !l.Live {
					return false
				}
				ok := false
				for pid := range running {
					ok = ok || strings.Contains(l.Holder, pid)
				}
				if !ok {
					return false
				}
				by[l.Holder]++
			}
			limit := (len(boxes)+alive-1)/alive + 1
			for _, n := range by {
				if n > limit {
					return false
				}
			}
			cps, err := view.Checkpoints(ctx)
			return err == nil && len(cps) == len(boxes) // start: new has recorded every checkpoint
		}
	}
	eventually(t, 60*time.Second, "six mailboxes leased and checkpointed across 3 replicas", settled(3))

	// status, beside the replicas, shows who holds each mailbox.
	status := exec.Command(binPath, "status", "-c", cfgs[0])
	status.Env = append(os.Environ(), envs[0]...)
	out, err := status.CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "lease: held by "); n != len(boxes) {
		t.Errorf("status shows %d held leases; want %d:\n%s", n, len(boxes), out)
	}

	streams := make([]*mailStream, len(boxes))
	for k, b := range boxes {
		streams[k] = newMail()
		streams[k].mailbox = b
		streams[k].next = 1 + 1000*k
	}
	want := func() []string {
		var all []string
		for _, s := range streams {
			all = append(all, s.want()...)
		}
		return all
	}
	round := func(n int) {
		for _, s := range streams {
			s.add(t, dc.Append, n)
		}
	}

	round(3)
	led.waitDelivered(t, 60*time.Second, want())
	led.check(t, want(), true) // no replica changed: exactly one request per message

	killed := time.Now()
	ds[0].kill() // SIGKILL: its leases lapse and are taken over
	round(1)
	eventually(t, 30*time.Second, "six mailboxes over the 2 remaining replicas", settled(2))
	t.Logf("takeover after SIGKILL: every mailbox watched again %v after the kill (lease_ttl 5s)", time.Since(killed).Round(10*time.Millisecond))
	led.waitDelivered(t, 60*time.Second, want())

	termed := time.Now()
	ds[1].terminate() // SIGTERM: releases its leases at once
	round(1)
	eventually(t, 30*time.Second, "six mailboxes on the last replica", settled(1))
	t.Logf("hand-over after SIGTERM: every mailbox watched again %v after the signal", time.Since(termed).Round(10*time.Millisecond))
	led.waitDelivered(t, 60*time.Second, want())
	led.check(t, want(), false) // a killed replica's in-flight job may go twice, under its one id
	ds[2].terminate()
}

// A replica exits with status 1, saying why, once a newer mailhook has migrated the shared
// database past it (a rolling upgrade).
func TestReplicaStopsWhenSchemaMovesOn(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{Password: testIMAPPassword})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	cfg, env := writeConfig(t, t.TempDir(), dc.Addr(), dc.User(), dc.Password(), recv.URL()+"/hook", nil)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n  lease_ttl: 5s\n")
	f.Close()
	d := startDaemon(t, cfg, append(env, "MAILHOOK_DSN="+dsn)...)
	eventually(t, 30*time.Second, "the replica watching its mailbox", func() bool {
		return strings.Contains(d.out.String(), "session ready")
	})
	if err := pg.Exec(dsnDatabase(t, dsn), "UPDATE schema_version SET version = version + 1"); err != nil {
		t.Fatal(err)
	}
	err, ok := d.wait(30 * time.Second)
	if !ok {
		t.Fatal("the replica still runs after the schema moved past it")
	}
	if err == nil || !strings.Contains(d.out.String(), "newer mailhook has migrated it") {
		t.Fatalf("exit %v; want status 1 and the reason in the log:\n%s", err, d.out.String())
	}
}

// dsnDatabase is the database name in a test cluster's dsn.
func dsnDatabase(t *testing.T, dsn string) string {
	t.Helper()
	i := strings.LastIndex(dsn, "/")
	j := strings.Index(dsn, "?")
	if i < 0 || j < i {
		t.Fatalf("dsn %q", dsn)
	}
	return dsn[i+1 : j]
}
