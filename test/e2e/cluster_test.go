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

// Package e2e runs the real manager binary against a real API server (envtest), configures it
// with kubectl like a platform engineer would, and talks to its gateway with the OpenAI Go SDK.
//
// envtest runs kube-apiserver and etcd only: there is no kubelet, no scheduler and no
// kube-controller-manager. Pods never run, so the test plays the part of the apps/v1
// Deployment controller where a Deployment must become available, and garbage collection does
// not happen by itself.
package e2e

import (
	"context"
	"fmt"
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

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/procfs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

// cluster is an API server, a kubeconfig for it and the manager binary running against it.
type cluster struct {
	t          *testing.T
	env        *envtest.Environment
	k8s        client.Client
	kubectl    string
	kubeconfig string // cluster-admin, for the test and kubectl
	// managerKubeconfig authenticates as the manager's ServiceAccount, which has exactly the
	// permissions of config/rbac: a permission the manager lacks fails the tests.
	managerKubeconfig string
	// token is a ServiceAccount token of team/app, which may call the models of team: the
	// manager authenticates and authorizes every gateway request (--gateway-auth=kubernetes).
	token    string
	dir      string
	bin      string // the manager binary
	*manager        // the first manager started
}

// manager is one manager process.
type manager struct {
	gateway string // base URL of its gateway
	metrics string // base URL of its metrics
	cmd     *exec.Cmd
	logs    *testutil.SyncBuffer
	exited  chan error
}

func startCluster(t *testing.T, managerArgs ...string) *cluster {
	t.Helper()
	grants, err := testenv.GatewayAPICRDs()
	if err != nil {
		t.Fatal(err)
	}
	env, err := testenv.Start(testenv.Options{ExtraCRDPaths: []string{grants}})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, env: env, dir: t.TempDir()}
	t.Cleanup(func() { _ = env.Stop() })
	if c.k8s, err = client.New(env.Config, client.Options{Scheme: testenv.Scheme}); err != nil {
		t.Fatal(err)
	}
	if c.kubectl, err = testenv.Kubectl(); err != nil {
		t.Fatal(err)
	}
	if c.kubeconfig, err = testenv.WriteKubeconfig(env, c.dir); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"system", "team", "infergate-system"} {
		if err := c.k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c.run("apply", "--server-side", "-k", filepath.Join(root, "config", "rbac"))
	c.run("apply", "--server-side", "-k", filepath.Join(root, "config", "access"))
	c.run("create", "serviceaccount", "app", "-n", "team")
	c.run("create", "rolebinding", "app-calls-models", "-n", "team", "--clusterrole", "infergate-model-user", "--serviceaccount", "team:app")
	c.token = strings.TrimSpace(c.run("create", "token", "app", "-n", "team"))
	sa, err := env.AddUser(envtest.User{Name: "system:serviceaccount:infergate-system:infergate",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:infergate-system", "system:authenticated"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := sa.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	c.managerKubeconfig = filepath.Join(c.dir, "manager.kubeconfig")
	if err := os.WriteFile(c.managerKubeconfig, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	c.bin = filepath.Join(c.dir, "manager")
	build := exec.Command("go", "build", "-o", c.bin, "./cmd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd: %v\n%s", err, out)
	}
	c.manager = c.startManager(managerArgs...)
	return c
}

// startManager runs one more manager process against the cluster and waits until it is ready.
func (c *cluster) startManager(args ...string) *manager {
	t := c.t
	t.Helper()
	addrs := testutil.FreeAddrs(t, 3)
	gw, probe, metrics := addrs[0], addrs[1], addrs[2]
	m := &manager{gateway: "http://" + gw, metrics: "http://" + metrics, logs: &testutil.SyncBuffer{}, exited: make(chan error, 1)}
	args = append([]string{"--kubeconfig", c.managerKubeconfig, "--gateway-bind-address", gw, "--health-probe-bind-address", probe,
		"--metrics-bind-address", metrics, "--system-workspace", "system", "--log-format", "console", "--log-level", "debug",
		"--allow-local-upstreams"}, args...) // the simulators listen on loopback
	m.cmd = exec.Command(c.bin, args...)
	m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.exited <- m.cmd.Wait() }()
	t.Cleanup(func() {
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(40 * time.Second):
			_ = m.cmd.Process.Kill()
		}
		for _, line := range strings.Split(m.logs.String(), "\n") {
			if strings.Contains(line, "is forbidden") {
				t.Errorf("the API server refused the manager a permission that config/rbac lacks:\n%s", line)
			}
		}
		if t.Failed() {
			t.Logf("manager logs:\n%s", m.logs.String())
		}
	})
	c.eventually(60*time.Second, func() error {
		resp, err := http.Get("http://" + probe + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %s", resp.Status)
		}
		return nil
	})
	return m
}

// run runs kubectl against the cluster and returns its output.
func (c *cluster) run(args ...string) string {
	c.t.Helper()
	out, err := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// apply writes manifest to a file and runs kubectl apply -f on it.
func (c *cluster) apply(manifest string) {
	c.t.Helper()
	f, err := os.CreateTemp(c.dir, "*.yaml")
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := f.WriteString(manifest); err != nil {
		c.t.Fatal(err)
	}
	f.Close()
	c.run("apply", "-f", f.Name())
}

func (c *cluster) eventually(timeout time.Duration, check func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("gave up after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// openai returns an SDK client for a workspace's OpenAI route, with team/app's token as its
// API key.
func (c *cluster) openai(ws string) *openai.Client { return c.openaiVia(c.manager, ws) }

// openaiVia returns an SDK client for a workspace's OpenAI route through m's gateway.
func (c *cluster) openaiVia(m *manager, ws string) *openai.Client {
	cl := openai.NewClient(option.WithBaseURL(m.gateway+"/apis/inference-gateway/v2/workspaces/"+ws+"/openai/-/v1/"),
		option.WithAPIKey(c.token), option.WithMaxRetries(0))
	return &cl
}

// get sends a GET with team/app's token through the first manager's gateway.
func (c *cluster) get(path string) *http.Response {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.gateway+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// status returns the HTTP status of a chat request for model through the first manager's
// gateway, sent with team/app's token.
func (c *cluster) status(ws, model string) int {
	c.t.Helper()
	return c.statusVia(c.manager, ws, model)
}

// routableOn waits until a chat request for model answers 200 through each of managers.
func (c *cluster) routableOn(timeout time.Duration, ws, model string, managers ...*manager) {
	c.t.Helper()
	for _, m := range managers {
		c.eventually(timeout, func() error {
			if s := c.statusVia(m, ws, model); s != 200 {
				return fmt.Errorf("%s/%s: status %d through %s", ws, model, s, m.gateway)
			}
			return nil
		})
	}
}

// statusVia returns the HTTP status of a chat request for model through m's gateway.
func (c *cluster) statusVia(m *manager, ws, model string) int {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, m.gateway+"/apis/inference-gateway/v2/workspaces/"+ws+"/openai/-/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// killAPIServer kills kube-apiserver with SIGKILL, as a crash or a partition would take it
// away: no graceful shutdown, connections simply stop.
func (c *cluster) killAPIServer() {
	c.t.Helper()
	if err := syscall.Kill(c.apiServerPID(), syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
}

// apiServerPID finds the cluster's kube-apiserver process.
func (c *cluster) apiServerPID() int {
	c.t.Helper()
	port := c.env.ControlPlane.APIServer.SecureServing.Port
	procs, err := procfs.AllProcs()
	if err != nil {
		c.t.Fatal(err)
	}
	for _, p := range procs {
		if args, err := p.CmdLine(); err == nil && len(args) > 0 && filepath.Base(args[0]) == "kube-apiserver" && slices.Contains(args, "--secure-port="+port) {
			return p.PID
		}
	}
	c.t.Fatalf("no kube-apiserver process with --secure-port=%s", port)
	return 0
}

type upstream struct {
	sim *simulator.Server
	srv *httptest.Server
}

func newUpstream(t *testing.T, name, key string, models ...string) *upstream {
	sim := simulator.New(simulator.Options{Name: name, Models: models, APIKey: key, Record: true, Chunks: 4})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &upstream{sim: sim, srv: srv}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
