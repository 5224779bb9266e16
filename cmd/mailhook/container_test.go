package main

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
)

// No container engine runs in CI, so this test checks what the Dockerfile promises by other
// means (one static binary, no cgo): it runs the Dockerfile's own `go build` line and checks that the result
// is a static binary, then runs that binary as the image's user (uid 65532) with the root
// filesystem mounted read-only and only state_dir writable, and requires it to deliver mail,
// answer /healthz and stop cleanly on SIGTERM.

// nonrootUID is the distroless "nonroot" user the image runs as.
const nonrootUID = 65532

// dockerBuildLine returns the RUN line of the Dockerfile that builds the binary.
func dockerBuildLine(t *testing.T) string {
	t.Helper()
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "RUN ") && strings.Contains(line, "go build") {
			return strings.TrimPrefix(line, "RUN ")
		}
	}
	t.Fatal("the Dockerfile has no RUN … go build line")
	return ""
}

// buildLikeDockerfile runs the Dockerfile's build line from the module root, writing to dir
// instead of /out, and returns the binary's path.
func buildLikeDockerfile(t *testing.T, dir, version string) string {
	t.Helper()
	line := dockerBuildLine(t)
	if !strings.Contains(line, "CGO_ENABLED=0") || !strings.Contains(line, "-o /out/mailhook") {
		t.Fatalf("the Dockerfile build line is not a static build to /out/mailhook: %s", line)
	}
	line = strings.ReplaceAll(line, "/out/", dir+"/")
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "VERSION="+version)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, out)
	}
	return filepath.Join(dir, "mailhook")
}

func TestContainerImageContract(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a release binary")
	}
	bin := buildLikeDockerfile(t, t.TempDir(), "v9.8.7-test")

	// Static: no ELF interpreter, no dynamic section, so distroless/static (no libc) runs it.
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: not static", p.Type)
		}
	}
	ef.Close()
	out, err := exec.Command(bin, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "mailhook v9.8.7-test" {
		t.Errorf("version = %q, %v; want the VERSION build arg", out, err)
	}

	// Non-root on a read-only root filesystem.
	for _, tool := range []string{"unshare", "setpriv", "mount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not available: %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount / read-only in a private mount namespace and to drop to uid 65532")
	}
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	led := ledger{recv: recv}
	dir := t.TempDir()
	// uid 65532 must reach the config and binary (read-only) and own state_dir (read-write).
	for _, p := range []string{filepath.Dir(dir), dir, filepath.Dir(bin), filepath.Dir(filepath.Dir(bin))} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg, env := writeConfig(t, dir, mem.Addr(), mem.User(), mem.Password(), recv.URL()+"/hook",
		func(p *cfgParams) { p.HTTPListen = "127.0.0.1:0" })
	if err := os.Chmod(cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, nonrootUID, nonrootUID); err != nil {
		t.Fatal(err)
	}
	// In a private mount namespace: state_dir becomes its own (writable) mount, then / is
	// remounted read-only, then the process drops to 65532 with no capabilities and becomes
	// mailhook (exec all the way, so SIGTERM reaches mailhook itself).
	script := `set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro /
touch /mailhook-rootfs-probe 2>/dev/null && { echo "root filesystem is writable" >&2; exit 97; }
exec setpriv --reuid 65532 --regid 65532 --clear-groups --inh-caps=-all --bounding-set=-all "$2" run -c "$3"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", state, bin, cfg)
	cmd.Env = append(os.Environ(), env...)
	d := startCmd(t, cmd)
	base := adminURL(t, d)
	waitReady(t, d)
	m := newMail()
	m.add(t, mem.Append, 3)
	want := m.want()
	led.waitDelivered(t, 30*time.Second, want)
	mustLive(t, base)
	proc, err := os.Stat(fmt.Sprintf("/proc/%d", d.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if uid := proc.Sys().(*syscall.Stat_t).Uid; uid != nonrootUID {
		t.Errorf("mailhook runs as uid %d, want %d", uid, nonrootUID)
	}
	d.terminate()
	led.check(t, want, true)

	// Everything it wrote is in state_dir, owned by 65532.
	var files int
	err = filepath.WalkDir(state, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if uid := info.Sys().(*syscall.Stat_t).Uid; uid != nonrootUID {
			t.Errorf("%s is owned by uid %d", p, uid)
		}
		files++
		return nil
	})
	if err != nil || files < 2 {
		t.Errorf("state_dir holds %d entries (%v); the store did not write there", files, err)
	}
}

// startCmd runs an arbitrary command as a daemon (see startDaemon), killing it when the test ends.
func startCmd(t *testing.T, cmd *exec.Cmd) *daemon {
	t.Helper()
	d := &daemon{t: t, cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = d.out, d.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("output:\n%s", d.out.String())
		}
	})
	return d
}

// dockerfileExec returns the exec-form argument list of the Dockerfile instruction (HEALTHCHECK,
// CMD), joining continuation lines; for HEALTHCHECK, the list after its CMD.
func dockerfileExec(t *testing.T, instruction string) []string {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.ReplaceAll(string(raw), "\\\n", " ")
	for line := range strings.Lines(joined) {
		rest, ok := strings.CutPrefix(line, instruction+" ")
		if !ok {
			continue
		}
		if instruction != "CMD" {
			_, rest, ok = strings.Cut(rest, " CMD ")
			if !ok {
				t.Fatalf("%s without CMD: %s", instruction, line)
			}
		}
		var args []string
		if err := json.Unmarshal([]byte(strings.TrimSpace(rest)), &args); err != nil {
			t.Fatalf("%s is not in exec form: %s: %v", instruction, line, err)
		}
		return args
	}
	t.Fatalf("the Dockerfile has no %s", instruction)
	return nil
}

// The image's HEALTHCHECK asks the address the config's http.listen names, with the config the
// image's CMD runs: a port changed in the config moves the health check with it.
func TestDockerfileHealthcheckFollowsListen(t *testing.T) {
	check, run := dockerfileExec(t, "HEALTHCHECK"), dockerfileExec(t, "CMD")
	if len(check) < 2 || check[0] != "/mailhook" || check[1] != "healthcheck" {
		t.Fatalf("HEALTHCHECK runs %q, want /mailhook healthcheck …", check)
	}
	cfgPath := run[len(run)-1]
	if !slices.Contains(check, cfgPath) || slices.Contains(check, "--addr") {
		t.Fatalf("HEALTHCHECK %q does not read the config the image runs (%s)", check, cfgPath)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		listen string
		ok     bool
	}{
		{"0.0.0.0:" + port, true},   // a container's wildcard listener, asked on loopback
		{"127.0.0.1:" + port, true}, // any port, not only 9090
		{"127.0.0.1:1", false},      // nothing listens there
	} {
		cfg, env := writeConfig(t, t.TempDir(), "127.0.0.1:1143", "u", "p", "http://127.0.0.1:1/hook",
			func(p *cfgParams) { p.HTTPListen = tc.listen })
		args := slices.Clone(check[1:])
		args[slices.Index(args, cfgPath)] = cfg
		cmd := exec.Command(binPath, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		if (err == nil) != tc.ok {
			t.Errorf("http.listen %s: healthcheck %v, want success %v:\n%s", tc.listen, err, tc.ok, out)
		}
	}
}
