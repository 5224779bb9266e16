package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
	"github.com/mailhook/mailhook/store/postgres"
)

// Three replicas of the built binary share one PostgreSQL store and watch six mailboxes on one
// Dovecot: each mailbox is watched by one replica, every message is delivered under one
// webhook-id, exactly once while no replica changes, with one IMAP session per mailbox on the
// server; a replica SIGSTOPped past its lease is taken over and, resumed, writes nothing (fencing):
// still exactly once; a SIGKILLed replica's mailboxes are taken over, a SIGTERMed one hands them
// over, and mail keeps flowing.
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
		cfg, env := replicaConfig(t, dc, recv.URL()+"/hook", boxes, dsn, "5s")
		cfgs, envs = append(cfgs, cfg), append(envs, env)
		ds = append(ds, startDaemon(t, cfg, env...))
	}

	ctx := context.Background()
	view := storeView(t, dsn)
	// settled: every lease live, held by a running replica (its id holds the process id), none
	// holding more than ⌈mailboxes / replicas⌉ + 1, and every mailbox checkpointed.
	settled := func(alive int, frozen ...*daemon) func() bool {
		return func() bool {
			running := map[string]bool{}
			for _, d := range ds {
				select {
				case <-d.done:
				default:
					if !slices.Contains(frozen, d) {
						running[fmt.Sprintf("-%d-", d.cmd.Process.Pid)] = true
					}
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
	sessions := func() bool { return dc.OpenSessions() == len(boxes) }
	eventually(t, 30*time.Second, "one IMAP session per mailbox on Dovecot", sessions)

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

	streams := newMailStreams(boxes)
	want := streams.want
	round := func(n int) { streams.round(t, dc, n) }

	round(3)
	led.waitDelivered(t, 60*time.Second, want())
	led.check(t, want(), true) // no replica changed: exactly one request per message

	// SIGSTOP one replica past its lease (a frozen VM): the others take its mailboxes over; resumed,
	// it finds its leases gone and writes nothing, so every message still goes exactly once.
	frozen := time.Now()
	if err := ds[2].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	round(1)
	eventually(t, 30*time.Second, "six mailboxes over the 2 replicas not stopped", settled(2, ds[2]))
	t.Logf("takeover after SIGSTOP: every mailbox watched again %v after the stop (lease_ttl 5s)", time.Since(frozen).Round(10*time.Millisecond))
	led.waitDelivered(t, 60*time.Second, want())
	if err := ds[2].cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	round(1)
	eventually(t, 30*time.Second, "the resumed replica giving its stale leases up", func() bool {
		out := ds[2].out.String() // its deadline passed, or its first renewal found them taken over
		return strings.Contains(out, "giving it up") || strings.Contains(out, "mailbox lease lost: taken over")
	})
	eventually(t, 60*time.Second, "six mailboxes across 3 replicas again", settled(3))
	led.waitDelivered(t, 60*time.Second, want())
	led.check(t, want(), true) // the stale replica delivered nothing twice
	eventually(t, 30*time.Second, "one IMAP session per mailbox again", sessions)

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

// A replica whose database cannot be reached at start exits 1 naming the host and the cause, and
// never the password of the dsn.
func TestReplicaDatabaseUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	cfg, env := writeConfig(t, t.TempDir(), "127.0.0.1:1", "user", "pw", "http://127.0.0.1:1/hook", nil)
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n")
	f.Close()
	const password = "Sup3rSecretDbPw"
	d := startDaemon(t, cfg, append(env, "MAILHOOK_DSN=postgres://mailhook:"+password+"@"+addr+"/mailhook?sslmode=disable")...)
	err, ok := d.wait(60 * time.Second)
	if !ok {
		t.Fatal("mailhook still runs with its database unreachable")
	}
	out := d.out.String()
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 1 {
		t.Errorf("exit %v; want status 1", err)
	}
	if !strings.Contains(out, addr) || !strings.Contains(out, "connection refused") {
		t.Errorf("output names no host %s and cause:\n%s", addr, out)
	}
	if strings.Contains(out, password) {
		t.Errorf("output carries the database password:\n%s", out)
	}
}

// Three replicas share the reply ledger and the download budget: mail from one sender arriving in
// three mailboxes (watched by different replicas) gets one auto-reply, and the budget holds every
// byte the server sent once, not once per replica.
func TestReplicasShareLedgers(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	boxes := []string{"A", "B", "C"}
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{Password: testIMAPPassword, Mailboxes: boxes})
	sink := testmail.StartSMTPSink(t, testmail.SMTPSinkOptions{})
	p := replyParams{Name: "desk", User: dc.User(), Mailbox: strings.Join(boxes, `", "`), From: "desk@example.test",
		IMAPPort: imapPort(t, dc.Addr()), SMTPPort: imapPort(t, sink.Addr()), Actions: []string{"reply: ack"}}
	var ds []*daemon
	for range 3 {
		dir := t.TempDir()
		p.StateDir = filepath.Join(dir, "state")
		var b strings.Builder
		if err := replyConfig.Execute(&b, p); err != nil {
			t.Fatal(err)
		}
		b.WriteString("store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n  lease_ttl: 5s\n")
		cfg := filepath.Join(dir, "mailhook.yaml")
		if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, startDaemon(t, cfg, "TEST_IMAP_PASSWORD="+testIMAPPassword, "TEST_WEBHOOK_SECRET="+testSecret, "MAILHOOK_DSN="+dsn))
	}
	ctx := context.Background()
	view := storeView(t, dsn)
	eventually(t, 60*time.Second, "three mailboxes leased and checkpointed", func() bool {
		ls, err := view.LeaseStates(ctx)
		if err != nil || len(ls) != len(boxes) {
			return false
		}
		holders := map[string]bool{}
		for _, l := range ls {
			if !l.Live {
				return false
			}
			holders[l.Holder] = true
		}
		cps, err := view.Checkpoints(ctx)
		return err == nil && len(cps) == len(boxes) && len(holders) >= 2
	})

	for i, box := range boxes {
		if _, err := dc.Append(box, human("x@example.test", "desk@example.test", "Hi "+box, fmt.Sprintf("x%d@example.test", i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dc.Append("B", human("y@example.test", "desk@example.test", "Hi from y", "y1@example.test")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "every message committed and every reply job settled", func() bool {
		cps, err := view.Checkpoints(ctx)
		if err != nil {
			return false
		}
		committed := 0
		for _, c := range cps {
			committed += int(c.Checkpoint.LastUID)
		}
		counts, err := view.TargetCounts(ctx, store.KindReply)
		if err != nil || committed < 4 {
			return false
		}
		for _, by := range counts {
			if by[store.StatePending]+by[store.StateInFlight] > 0 {
				return false
			}
		}
		return len(sink.Messages()) >= 2
	})
	var to []string
	for _, m := range sink.Messages() {
		to = append(to, strings.Join(m.To, ","))
	}
	slices.Sort(to)
	if want := []string{"x@example.test", "y@example.test"}; !slices.Equal(to, want) {
		t.Errorf("auto-replies to %v; want exactly one each to %v", to, want)
	}

	for _, d := range ds {
		d.terminate()
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var charged int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(sum(bytes), 0) FROM budget_buckets`).Scan(&charged); err != nil {
		t.Fatal(err)
	}
	_, served := dc.LogoutBytes()
	t.Logf("download budget charged %d bytes; Dovecot sent %d bytes over the replicas' sessions", charged, served)
	// Dovecot's figure leaves out what its login process sent (greeting, capabilities, the login
	// reply: a few hundred bytes per session), which the budget counts; a byte charged by two
	// replicas would double it.
	if charged < served || charged >= 2*served {
		t.Errorf("budget charged %d bytes for %d bytes served; want each byte once", charged, served)
	}
}

// On PostgreSQL an inline attachment lives in the database, so a replica that never fetched the
// message delivers it: replica A fetches an invoice and commits while the receiver refuses, stops;
// replica B, with a state directory of its own, delivers the PDF whole, and the blobs go once the
// job is done.
func TestInlineAttachmentsAcrossReplicas(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{})
	var accept atomic.Bool
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret,
		Handler: func(_ int, w http.ResponseWriter, _ *http.Request) {
			if !accept.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		}})
	host, port, err := net.SplitHostPort(dc.Addr())
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"TEST_IMAP_PASSWORD=" + dc.Password(), "TEST_WEBHOOK_SECRET=" + testSecret, "MAILHOOK_DSN=" + dsn}
	replica := func() (cfg, state string) {
		dir := t.TempDir()
		state, cfg = filepath.Join(dir, "state"), filepath.Join(dir, "mailhook.yaml")
		yaml := fmt.Sprintf(inlineConfig, state, host, port, dc.User(), recv.URL()) +
			"store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n  lease_ttl: 5s\n"
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg, state
	}
	pdf := bytes.Repeat([]byte("%PDF-1.7 \x00\x01\xfe\xff"), 10_000) // 120 KB, under max_inline_bytes
	if _, err := dc.Append("INBOX", invoiceMail("small", pdf, []byte("%PDF-1.4 contract\r\n"))); err != nil {
		t.Fatal(err)
	}
	cfgA, _ := replica()
	a := startDaemon(t, cfgA, env...)
	eventually(t, 30*time.Second, "replica A's first attempt refused", func() bool { return recv.Len() >= 1 })
	a.terminate()

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	chunks := func() int {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM blob_chunks`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := chunks(); n < 2 {
		t.Fatalf("%d blob chunks after replica A committed; want the PDFs in the database", n)
	}

	accept.Store(true)
	cfgB, stateB := replica()
	b := startDaemon(t, cfgB, env...)
	eventually(t, 60*time.Second, "replica B delivering the invoice", func() bool {
		reqs := recv.Requests()
		return len(reqs) >= 2 && bytes.Contains(reqs[len(reqs)-1].Body, []byte(base64.StdEncoding.EncodeToString(pdf[:3000])))
	})
	eventually(t, 30*time.Second, "the blobs of the done job removed", func() bool { return chunks() == 0 })
	if files := filesUnder(filepath.Join(stateB, "spool")); len(files) != 0 {
		t.Errorf("replica B spooled %v; it never fetched the message", files)
	}
	b.terminate()
	reqs := recv.Requests()
	last := reqs[len(reqs)-1]
	if !last.Verified {
		t.Errorf("replica B's request: signature does not verify: %v", last.VerifyErr)
	}
	if !bytes.Equal(last.Body, reqs[0].Body) {
		t.Error("replica B sent other bytes than replica A's refused attempt")
	}
}

// BenchmarkReplicasHundredMailboxes: three replicas of the built binary start at once on one
// PostgreSQL store and 100 mailboxes on one Dovecot (one account). Reported: seconds until every
// mailbox is watched (all-watched-s) and until no replica holds more than ⌈100/3⌉ + 1
// (spread-s), IMAP sessions on Dovecot once spread (sessions), and the most database
// connections one replica holds (conns-per-replica).
func BenchmarkReplicasHundredMailboxes(b *testing.B) {
	const mailboxes, replicas = 100, 3
	boxes := []string{"INBOX"}
	for i := 1; i < mailboxes; i++ {
		boxes = append(boxes, fmt.Sprintf("m%02d", i))
	}
	pg := testmail.StartPostgres(b, testmail.PostgresOptions{})
	dc := testmail.StartDovecot(b, testmail.DovecotOptions{Password: testIMAPPassword, Mailboxes: boxes[1:]})
	recv := testmail.StartReceiver(b, testmail.ReceiverOptions{Secret: testSecret})
	ctx := context.Background()
	var watched, spread, sessions, conns []float64
	for range b.N {
		dsn := pg.NewDatabase(b)
		view, err := postgres.Open(ctx, dsn, store.Options{}, postgres.Options{})
		if err != nil {
			b.Fatal(err)
		}
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			b.Fatal(err)
		}
		before := dc.OpenSessions()
		start := time.Now()
		var ds []*daemon
		for range replicas {
			dir := b.TempDir()
			cfg, env := writeConfig(b, dir, dc.Addr(), dc.User(), dc.Password(), recv.URL()+"/hook", func(p *cfgParams) {
				p.Mailbox = strings.Join(boxes, ", ")
			})
			f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(f, "store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n")
			f.Close()
			ds = append(ds, startDaemon(b, cfg, append(env, "MAILHOOK_DSN="+dsn)...))
		}
		held := func() (live int, most int) {
			ls, err := view.LeaseStates(ctx)
			if err != nil {
				return 0, 0
			}
			by := map[string]int{}
			for _, l := range ls {
				if l.Live {
					live++
					by[l.Holder]++
				}
			}
			for _, n := range by {
				most = max(most, n)
			}
			return live, most
		}
		eventually(b, 120*time.Second, "every mailbox watched", func() bool {
			live, _ := held()
			return live == mailboxes && dc.OpenSessions()-before >= mailboxes
		})
		watched = append(watched, time.Since(start).Seconds())
		eventually(b, 300*time.Second, "the mailboxes spread", func() bool {
			live, most := held()
			return live == mailboxes && most <= (mailboxes+replicas-1)/replicas+1
		})
		spread = append(spread, time.Since(start).Seconds())
		eventually(b, 60*time.Second, "one session per mailbox", func() bool { return dc.OpenSessions()-before == mailboxes })
		sessions = append(sessions, float64(dc.OpenSessions()-before))
		var most int
		if err := conn.QueryRow(ctx, `SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'mailhook %' GROUP BY application_name) c`).Scan(&most); err != nil {
			b.Fatal(err)
		}
		conns = append(conns, float64(most))
		for _, d := range ds {
			d.terminate()
		}
		conn.Close(ctx)
		view.Close()
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	b.ReportMetric(med(watched), "all-watched-s")
	b.ReportMetric(med(spread), "spread-s")
	b.ReportMetric(med(sessions), "sessions")
	b.ReportMetric(med(conns), "conns-per-replica")
}

// The database goes away under two running replicas: their leases lapse and they close their IMAP
// sessions (nobody is sure to hold a mailbox); mail arriving meanwhile is not lost: once the
// database is back every mailbox is watched again and every message is delivered, none under two
// webhook-ids.
func TestReplicasDatabaseOutage(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	boxes := []string{"INBOX", "b1"}
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{Password: testIMAPPassword, Mailboxes: boxes[1:]})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	led := ledger{recv: recv}
	var ds []*daemon
	for range 2 {
		cfg, env := replicaConfig(t, dc, recv.URL()+"/hook", boxes, dsn, "5s")
		ds = append(ds, startDaemon(t, cfg, env...))
	}
	sessions := func(n int) func() bool { return func() bool { return dc.OpenSessions() == n } }
	eventually(t, 60*time.Second, "one IMAP session per mailbox", sessions(len(boxes)))
	// A session is counted once logged in, before its watcher has recorded the first checkpoint
	// (start: new); mail appended before that is rightly skipped. Seen once under load.
	ctx := context.Background()
	view := storeView(t, dsn)
	eventually(t, 30*time.Second, "every mailbox checkpointed", func() bool {
		cps, err := view.Checkpoints(ctx)
		return err == nil && len(cps) == len(boxes)
	})
	streams := newMailStreams(boxes)
	want := streams.want
	round := func(n int) { streams.round(t, dc, n) }
	round(2)
	led.waitDelivered(t, 60*time.Second, want())

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the replicas closing their sessions once their leases lapse", sessions(0))
	round(2)
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "every mailbox watched again", sessions(len(boxes)))
	led.waitDelivered(t, 60*time.Second, want())
	led.check(t, want(), false)
	for _, d := range ds {
		d.terminate()
	}
}

// storeView opens the replicas' PostgreSQL store dsn beside them, to look at leases and
// checkpoints (it migrates if no replica has yet); closed when the test ends.
func storeView(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	view, err := postgres.Open(context.Background(), dsn, store.Options{}, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { view.Close() })
	return view
}

// replicaConfig writes the configuration of one replica watching boxes on dc, delivering to url,
// on the PostgreSQL store dsn with the given lease_ttl ("" for the default); it returns the path
// and the environment the daemon needs.
func replicaConfig(t testing.TB, dc *testmail.Dovecot, url string, boxes []string, dsn, ttl string) (string, []string) {
	t.Helper()
	cfg, env := writeConfig(t, t.TempDir(), dc.Addr(), dc.User(), dc.Password(), url, func(p *cfgParams) {
		p.Mailbox = strings.Join(boxes, ", ")
	})
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "store:\n  driver: postgres\n  dsn: ${MAILHOOK_DSN}\n")
	if ttl != "" {
		fmt.Fprintf(f, "  lease_ttl: %s\n", ttl)
	}
	return cfg, append(env, "MAILHOOK_DSN="+dsn)
}

// mailStreams is one stream of test mail per mailbox: round(n) appends n messages to each, want
// lists every message appended so far.
type mailStreams []*mailStream

func newMailStreams(boxes []string) mailStreams {
	ss := make(mailStreams, len(boxes))
	for k, b := range boxes {
		ss[k] = newMail()
		ss[k].mailbox = b
		ss[k].next = 1 + 1000*k
	}
	return ss
}

func (ss mailStreams) round(t *testing.T, dc *testmail.Dovecot, n int) {
	for _, s := range ss {
		s.add(t, dc.Append, n)
	}
}

func (ss mailStreams) want() []string {
	var all []string
	for _, s := range ss {
		all = append(all, s.want()...)
	}
	return all
}

// sslmode is honoured: a dsn requiring TLS against a server without it is refused at start, exit 1,
// saying so.
func TestReplicaSSLModeHonoured(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := strings.Replace(pg.NewDatabase(t), "sslmode=disable", "sslmode=require", 1)
	dc := testmail.StartDovecot(t, testmail.DovecotOptions{Password: testIMAPPassword})
	cfg, env := replicaConfig(t, dc, "http://127.0.0.1:1/hook", []string{"INBOX"}, dsn, "")
	d := startDaemon(t, cfg, env...)
	err, ok := d.wait(60 * time.Second)
	if !ok {
		t.Fatal("mailhook still runs with a dsn requiring TLS the server does not offer")
	}
	if ee, isExit := err.(*exec.ExitError); !isExit || ee.ExitCode() != 1 || !strings.Contains(d.out.String(), "TLS") {
		t.Errorf("exit %v; want status 1 naming TLS:\n%s", err, d.out.String())
	}
}
