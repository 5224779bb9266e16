package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

// BenchmarkIdleRSS measures the resident memory of the built binary (with the failpoints tag the
// process tests use) watching one Dovecot mailbox in IDLE: started on an empty state directory,
// read from /proc 5 s after its session is ready. Reported: rss-MB (target ≤ 30). Run with
//
//	go test ./cmd/mailhook -run '^$' -bench IdleRSS -benchtime 1x
func BenchmarkIdleRSS(b *testing.B) {
	dc := testmail.StartDovecot(b, testmail.DovecotOptions{Password: testIMAPPassword})
	recv := testmail.StartReceiver(b, testmail.ReceiverOptions{Secret: testSecret})
	var rss []float64
	for b.Loop() {
		path, env := writeConfig(b, b.TempDir(), dc.Addr(), dc.User(), dc.Password(), recv.URL()+"/hook", nil)
		d := startDaemon(b, path, env...)
		eventually(b, 30*time.Second, "the session ready", func() bool { return strings.Contains(d.out.String(), "session ready") })
		time.Sleep(5 * time.Second) // what is measured: the process after settling in IDLE
		kb, err := vmRSS(d.cmd.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		rss = append(rss, float64(kb)/1024)
		d.terminate()
	}
	b.ReportMetric(median(rss), "rss-MB")
}

// vmRSS reads the VmRSS line of /proc/PID/status, in KiB.
func vmRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(raw)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
