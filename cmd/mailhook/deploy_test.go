package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
		})
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
