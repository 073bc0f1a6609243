/*
Copyright 2026 The infergate Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

// The real binary, started the way a platform engineer starts it, against a real API server.
func TestManagerBinary(t *testing.T) {
	env, err := testenv.Start(testenv.Options{WithoutCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dir := t.TempDir()
	kubeconfig, err := testenv.WriteKubeconfig(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "manager")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	t.Run("refuses flags it cannot honour, saying what it wants", func(t *testing.T) {
		for _, tc := range []struct{ flag, value, want string }{
			{"--gateway-auth", "oidc", `--gateway-auth="oidc": want "kubernetes" or "none"`},
			{"--secret-label-selector", "team in (a,b)", `--secret-label-selector="team in (a,b)": want labels such as inference.infergate.dev/api-key=true`},
			{"--gateway-idle-timeout", "0s", `--gateway-idle-timeout=0s: want a positive duration, such as 10s`},
			{"--gateway-max-header-bytes", "100", `--gateway-max-header-bytes=100: want at least 4096`},
			{"--egress-deny", "internal", `--egress-deny=internal: want an IP range such as 10.0.0.0/8`},
			{"--egress-allow", "10.1.0.0/8", `--egress-allow=10.1.0.0/8: the address has bits set past /8; the range is 10.0.0.0/8`},
			{"--egress-nat64-prefix", "64:ff9b:1::/80", `--egress-nat64-prefix=64:ff9b:1::/80: a NAT64 prefix is /32, /40, /48, /56, /64 or /96 long`},
		} {
			out, err := exec.Command(bin, "--kubeconfig", kubeconfig, tc.flag, tc.value).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("%s %q: err %v, output:\n%s", tc.flag, tc.value, err, out)
			}
		}
	})

	t.Run("exits with a clear message when the CRDs are missing", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "--kubeconfig", kubeconfig,
			"--metrics-bind-address", "0", "--health-probe-bind-address", testutil.FreeAddr(t))
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("manager exited 0 without CRDs:\n%s", out)
		}
		for _, want := range []string{"the infergate CRDs are not installed", "ModelEntity, Provider, Deployment", "kubectl apply --server-side -f config/crd/bases"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("output does not say %q:\n%s", want, out)
			}
		}
	})

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
		Paths: []string{filepath.Join(root, "config", "crd", "bases")}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("serves probes and metrics, takes the lease, stops on SIGTERM", func(t *testing.T) {
		k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme})
		if err != nil {
			t.Fatal(err)
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "infergate-system"}}
		if err := k8s.Create(context.Background(), ns); err != nil {
			t.Fatal(err)
		}
		addrs := testutil.FreeAddrs(t, 3)
		probe, metrics, gw := addrs[0], addrs[1], addrs[2]
		var logs testutil.SyncBuffer
		cmd := exec.Command(bin, "--kubeconfig", kubeconfig,
			"--health-probe-bind-address", probe, "--metrics-bind-address", metrics, "--gateway-bind-address", gw,
			"--leader-elect", "--leader-election-namespace", "infergate-system", "--log-format", "json",
			"--gateway-shutdown-delay", "5s")
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		defer func() {
			_ = cmd.Process.Kill()
		}()

		models := "http://" + gw + "/apis/inference-gateway/v2/workspaces/default/openai/-/v1/models"
		for _, url := range []string{"http://" + probe + "/healthz", "http://" + probe + "/readyz", "http://" + metrics + "/metrics", "http://" + gw + "/healthz", models} {
			want := http.StatusOK
			if url == models {
				want = http.StatusUnauthorized // --gateway-auth=kubernetes by default, and no token
			}
			waitFor(t, 30*time.Second, func() error {
				resp, err := http.Get(url)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					return fmt.Errorf("%s: %s, want %d", url, resp.Status, want)
				}
				return nil
			})
		}
		resp, err := http.Get("http://" + metrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, name := range []string{"infergate_gateway_routable_entities", `infergate_gateway_auth_decisions_total{decision="denied",step="authentication"} 1`} {
			if !strings.Contains(string(body), name) {
				t.Errorf("the manager's /metrics has no %s", name)
			}
		}
		waitFor(t, 30*time.Second, func() error {
			var lease coordinationv1.Lease
			return k8s.Get(context.Background(), client.ObjectKey{Namespace: "infergate-system", Name: "infergate.inference.infergate.dev"}, &lease)
		})
		// The elected replica says so on /metrics, as controller-runtime's managers did.
		waitFor(t, 10*time.Second, func() error {
			resp, err := http.Get("http://" + metrics + "/metrics")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if want := `leader_election_master_status{name="infergate-system/infergate.inference.infergate.dev"} 1`; !strings.Contains(string(body), want) {
				return fmt.Errorf("no %s on /metrics", want)
			}
			return nil
		})

		// Without --allow-local-upstreams, a Provider on a loopback address is never contacted,
		// and its condition says why.
		var contacted atomic.Int32
		local := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { contacted.Add(1) }))
		defer local.Close()
		p := &inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "on-loopback"},
			Spec: inferencev1alpha1.ProviderSpec{URL: local.URL}}
		if err := k8s.Create(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, func() error {
			if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(p), p); err != nil {
				return err
			}
			c := meta.FindStatusCondition(p.Status.Conditions, inferencev1alpha1.ConditionReady)
			if c == nil || c.Reason != string(inferencev1alpha1.ReasonAddressNotAllowed) || !strings.Contains(c.Message, "--allow-local-upstreams") {
				return fmt.Errorf("condition %+v", c)
			}
			return nil
		})
		if contacted.Load() != 0 {
			t.Error("the manager contacted a loopback upstream")
		}

		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Within the shutdown delay, new connections are still served.
		waitFor(t, 30*time.Second, func() error {
			if !strings.Contains(logs.String(), `"msg":"gateway still serving while traffic moves away"`) {
				return errors.New("no shutdown delay in the logs")
			}
			return nil
		})
		resp, err = http.Get(models)
		if err != nil {
			t.Fatalf("a request within the shutdown delay: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a request within the shutdown delay: %s", resp.Status)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("manager exited with %v after SIGTERM:\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("manager did not stop within 30s of SIGTERM:\n%s", logs.String())
		}
		if !strings.Contains(logs.String(), `"msg":"starting manager"`) {
			t.Errorf("logs are not JSON lines from zap:\n%s", logs.String())
		}
		if !strings.Contains(logs.String(), `"msg":"gateway draining"`) {
			t.Errorf("the gateway did not drain on SIGTERM:\n%s", logs.String())
		}
	})
}

func waitFor(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
