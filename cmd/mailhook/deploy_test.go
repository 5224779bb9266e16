package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"

	"github.com/mailhook/mailhook/config"
	"go.yaml.in/yaml/v3"
)

// The deploy/ examples are documentation people copy: their embedded mailhook configurations must
// load, the sidecar must wire liveness and startup probes but no readiness probe (a failing
// sidecar /readyz would take the application out of its Service during an upstream outage), the
// standalone example must wire all three, and both must run non-root on a read-only root
// filesystem with secrets from a Secret.

type k8sProbe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
	} `yaml:"httpGet"`
}

type k8sContainer struct {
	Name            string    `yaml:"name"`
	Args            []string  `yaml:"args"`
	LivenessProbe   *k8sProbe `yaml:"livenessProbe"`
	ReadinessProbe  *k8sProbe `yaml:"readinessProbe"`
	StartupProbe    *k8sProbe `yaml:"startupProbe"`
	SecurityContext struct {
		ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
	} `yaml:"securityContext"`
	EnvFrom []struct {
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
}

type k8sDoc struct {
	Kind string            `yaml:"kind"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readK8s(t *testing.T, path string) []k8sDoc {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []k8sDoc
	for {
		var d k8sDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

func TestDeployKubernetesExamples(t *testing.T) {
	for _, tc := range []struct {
		file      string
		readiness bool
	}{
		{"sidecar.yaml", false},
		{"standalone.yaml", true},
		{"replicas.yaml", true},
	} {
		t.Run(tc.file, func(t *testing.T) {
			docs := readK8s(t, filepath.Join("../../deploy/kubernetes", tc.file))
			var configs int
			var mh *k8sContainer
			for _, d := range docs {
				if d.Kind == "ConfigMap" {
					cfg := filepath.Join(t.TempDir(), "config.yaml")
					if err := os.WriteFile(cfg, []byte(d.Data["config.yaml"]), 0o600); err != nil {
						t.Fatal(err)
					}
					env := func(string) (string, bool) { return "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", true }
					c, _, err := config.Load(cfg, config.Options{Getenv: env})
					if err != nil {
						t.Errorf("embedded config does not load: %v", err)
					} else if c.HTTP.Listen != "0.0.0.0:9090" || c.StateDir != "/var/lib/mailhook" {
						t.Errorf("embedded config: listen %q, state_dir %q", c.HTTP.Listen, c.StateDir)
					} else {
						checkAuthRules(t, c)
					}
					configs++
				}
				if d.Kind != "Deployment" && d.Kind != "StatefulSet" {
					continue
				}
				ps := d.Spec.Template.Spec
				if !ps.SecurityContext.RunAsNonRoot || ps.SecurityContext.RunAsUser != nonrootUID {
					t.Errorf("pod security context %+v: want non-root uid %d", ps.SecurityContext, nonrootUID)
				}
				for i := range ps.Containers {
					if ps.Containers[i].Name == "mailhook" {
						mh = &ps.Containers[i]
					}
				}
			}
			if configs != 1 || mh == nil {
				t.Fatalf("%d configs, mailhook container %v", configs, mh != nil)
			}
			if mh.LivenessProbe == nil || mh.LivenessProbe.HTTPGet.Path != "/healthz" ||
				mh.StartupProbe == nil || mh.StartupProbe.HTTPGet.Path != "/healthz" {
				t.Error("liveness and startup probes must GET /healthz")
			}
			if got := mh.ReadinessProbe != nil; got != tc.readiness {
				t.Errorf("readiness probe present = %v, want %v", got, tc.readiness)
			}
			if tc.readiness && mh.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("readiness probe GETs %q", mh.ReadinessProbe.HTTPGet.Path)
			}
			if !mh.SecurityContext.ReadOnlyRootFilesystem {
				t.Error("root filesystem not read-only")
			}
			if len(mh.EnvFrom) == 0 || mh.EnvFrom[0].SecretRef == nil {
				t.Error("secrets do not come from a Secret")
			}
			// The comment shows the operator verbs through kubectl exec, with the config the
			// container runs.
			raw, err := os.ReadFile(filepath.Join("../../deploy/kubernetes", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(mh.Args) == 0 || !strings.Contains(string(raw), "-- /mailhook status --config "+mh.Args[len(mh.Args)-1]+"\n") {
				t.Errorf("no `kubectl exec … -- /mailhook status --config CONFIG` line for the config in args %q", mh.Args)
			}
		})
	}
}

// checkAuthRules requires the example's rules to check the sender with auth.dmarc, and every
// rule that reads auth.* to watch an account whose trusted_authserv_id is set: without it auth.*
// is never "pass" and the rule never matches.
func checkAuthRules(t *testing.T, c *config.Config) {
	t.Helper()
	var dmarc bool
	for _, r := range c.Rules {
		if !strings.Contains(r.When, "auth.") {
			continue
		}
		dmarc = dmarc || strings.Contains(r.When, `auth.dmarc == "pass"`)
		for _, a := range c.Accounts {
			if (r.Account == "" || r.Account == a.Name) && a.IMAP.TrustedAuthservID == "" {
				t.Errorf("rule %q reads auth.* on account %q, which has no trusted_authserv_id", r.Name, a.Name)
			}
		}
	}
	if !dmarc {
		t.Error(`no rule checks auth.dmarc == "pass": the From address alone can be forged`)
	}
}

// The systemd unit passes `systemd-analyze verify` and keeps its hardening.
func TestDeploySystemdUnit(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/systemd/mailhook.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{"DynamicUser=yes", "ProtectSystem=strict", "StateDirectory=mailhook",
		"NoNewPrivileges=yes", "CapabilityBoundingSet=\n", "RestartPreventExitStatus=2"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "mailhook.service")
	unit = strings.ReplaceAll(unit, "/usr/local/bin/mailhook", binPath)
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The unit's service user is transient (DynamicUser=yes) and owns nothing under /etc: the test
// installs the config and the credentials with the modes the unit's install comment gives, owned
// by root, reads EnvironmentFile= as root as systemd does, and runs ExecStartPre= and ExecStart=
// as an unprivileged uid in WorkingDirectory= with the unit's UMask=. The check must pass and the
// daemon must deliver mail. The same check against a config installed 0640 (the mode the install
// comment once gave) must fail, so the test would have caught that.
func TestDeploySystemdUnitRunsUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to install files as root and drop to an unprivileged uid")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv not available")
	}
	raw, err := os.ReadFile("../../deploy/systemd/mailhook.service")
	if err != nil {
		t.Fatal(err)
	}
	u := parseUnit(t, string(raw))
	// A uid in systemd's DynamicUser range (61184–65519) that owns nothing here.
	const uid = 61999
	root := t.TempDir()
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(root), filepath.Dir(binPath)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := func(p string) string { return filepath.Join(root, p) }

	// StateDirectory=: systemd creates it owned by the service user with StateDirectoryMode=.
	state := path(u.stateDir)
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, u.stateMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(state, uid, uid); err != nil {
		t.Fatal(err)
	}
	mem := testmail.StartMemServer(t, testmail.MemOptions{})
	recv := testmail.StartReceiver(t, testmail.ReceiverOptions{Secret: testSecret})
	led := ledger{recv: recv}
	cfgText, env := writeConfig(t, t.TempDir(), mem.Addr(), mem.User(), mem.Password(), recv.URL()+"/hook",
		func(p *cfgParams) { p.StateDir, p.HTTPListen = state, "127.0.0.1:0" })
	cfgRaw, err := os.ReadFile(cfgText)
	if err != nil {
		t.Fatal(err)
	}
	var credentials strings.Builder
	for _, e := range env {
		credentials.WriteString(e + "\n")
	}
	install := func(dest string, data []byte) {
		t.Helper()
		mode, ok := u.installModes[dest]
		if !ok {
			t.Fatalf("the install comment does not install %s", dest)
		}
		p := path(dest)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil { // install -D
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	install(u.configPath, cfgRaw)
	install(u.envFile, []byte(credentials.String()))

	// systemd reads EnvironmentFile= as root.
	envRaw, err := os.ReadFile(path(u.envFile))
	if err != nil {
		t.Fatal(err)
	}
	environ := []string{"PATH=/usr/bin:/bin"}
	for line := range strings.Lines(string(envRaw)) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			environ = append(environ, line)
		}
	}
	command := func(line string) *exec.Cmd {
		args := strings.Fields(line)
		for i, a := range args {
			switch {
			case a == "/usr/local/bin/mailhook":
				args[i] = binPath
			case strings.HasPrefix(a, "/etc/") || strings.HasPrefix(a, "/var/"):
				args[i] = path(a)
			}
		}
		script := fmt.Sprintf(`umask %s && exec setpriv --reuid %d --regid %d --clear-groups --inh-caps=-all --bounding-set=-all -- "$@"`,
			u.umask, uid, uid)
		cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, args...)...)
		cmd.Env = environ
		cmd.Dir = path(u.workDir)
		return cmd
	}

	if out, err := command(u.execStartPre).CombinedOutput(); err != nil {
		t.Fatalf("ExecStartPre=%s as uid %d: %v\n%s", u.execStartPre, uid, err, out)
	}
	d := startCmd(t, command(u.execStart))
	base := adminURL(t, d)
	waitReady(t, d)
	m := newMail()
	m.add(t, mem.Append, 1)
	want := m.want()
	led.waitDelivered(t, 30*time.Second, want)
	mustLive(t, base)
	d.terminate()
	led.check(t, want, true)

	// The mode the install comment once gave: the service user cannot read the config.
	if err := os.Chmod(path(u.configPath), 0o640); err != nil {
		t.Fatal(err)
	}
	out, err := command(u.execStartPre).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitConfig || !strings.Contains(string(out), "permission denied") {
		t.Errorf("check of a 0640 config as uid %d: %v, want exit %d naming the permission:\n%s", uid, err, exitConfig, out)
	}
}

// unitFacts are the parts of deploy/systemd/mailhook.service that decide whether the service user
// can read its config.
type unitFacts struct {
	execStartPre, execStart  string
	configPath, envFile      string
	workDir, stateDir, umask string
	stateMode                os.FileMode
	installModes             map[string]os.FileMode // destination → mode, from the install comment
}

func parseUnit(t *testing.T, unit string) unitFacts {
	t.Helper()
	u := unitFacts{installModes: map[string]os.FileMode{}}
	installRE := regexp.MustCompile(`^#\s+install (?:-D )?-m (0[0-7]{3}) \S+ (/etc/\S+)$`)
	for line := range strings.Lines(unit) {
		line = strings.TrimSpace(line)
		if m := installRE.FindStringSubmatch(line); m != nil {
			mode, err := strconv.ParseUint(m[1], 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			u.installModes[m[2]] = os.FileMode(mode)
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		switch key {
		case "ExecStartPre":
			u.execStartPre = value
		case "ExecStart":
			u.execStart = value
		case "EnvironmentFile":
			u.envFile = value
		case "WorkingDirectory":
			u.workDir = value
		case "StateDirectory":
			u.stateDir = "/var/lib/" + value
		case "StateDirectoryMode":
			mode, err := strconv.ParseUint(value, 8, 32)
			if err != nil {
				t.Fatal(err)
			}
			u.stateMode = os.FileMode(mode)
		case "UMask":
			u.umask = value
		}
	}
	if _, after, ok := strings.Cut(u.execStart, "--config "); ok {
		u.configPath = strings.Fields(after)[0]
	}
	if u.execStartPre == "" || u.execStart == "" || u.configPath == "" || u.envFile == "" ||
		u.workDir == "" || u.stateDir == "" || u.umask == "" || u.stateMode == 0 {
		t.Fatalf("unit facts incomplete: %+v", u)
	}
	return u
}
