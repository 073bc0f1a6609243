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

package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

// plugin runs the kubectl-inference binary as a user would, with a kubeconfig of its own.
type plugin struct {
	t   *testing.T
	bin string
	env []string
}

// result is what a run printed and how it ended.
type result struct {
	out, err string
	code     int
}

func (p *plugin) run(stdin string, args ...string) result {
	p.t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.Env = p.env
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		p.t.Fatal(err)
	}
	return result{out.String(), errOut.String(), code}
}

// ok runs the plugin and fails the test unless it exits 0.
func (p *plugin) ok(args ...string) string {
	p.t.Helper()
	r := p.run("", args...)
	if r.code != 0 {
		p.t.Fatalf("kubectl inference %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// fails runs the plugin and fails the test unless it exits with code and says each of want.
func (p *plugin) fails(code int, want []string, args ...string) {
	p.t.Helper()
	r := p.run("", args...)
	if r.code != code {
		p.t.Errorf("kubectl inference %s: exit %d, want %d\n%s%s", strings.Join(args, " "), r.code, code, r.out, r.err)
		return
	}
	for _, w := range want {
		if !strings.Contains(r.err, w) {
			p.t.Errorf("kubectl inference %s: stderr does not say %q:\n%s", strings.Join(args, " "), w, r.err)
		}
	}
}

// TestKubectlInference runs the plugin binary against a manager and a simulator, every command
// in text and JSON, as a user with a ServiceAccount token would.
func TestKubectlInference(t *testing.T) {
	c := startCluster(t)
	up := httptest.NewServer(simulator.New(simulator.Options{Name: "sim", Models: []string{served}, Chunks: 5, ChunkDelay: 150 * time.Millisecond}))
	t.Cleanup(up.Close)
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim, namespace: team}
spec: {url: ` + up.URL + `}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama, namespace: team}
spec: {servedModelName: ` + served + `}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: orphan, namespace: team}
spec: {servedModelName: nobody/serves-this}
`)
	// team/app may call models (startCluster), the provider route, and read the resources.
	c.run("create", "rolebinding", "app-providers", "-n", "team", "--clusterrole", "infergate-provider-user", "--serviceaccount", "team:app")
	c.run("create", "rolebinding", "app-views", "-n", "team", "--clusterrole", "infergate-viewer", "--serviceaccount", "team:app")

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(c.dir, "kubectl-inference")
	build := exec.Command("go", "build", "-o", bin, "./cmd/kubectl-inference")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/kubectl-inference: %v\n%s", err, out)
	}
	// The admin kubeconfig, with namespace team as its context's.
	kubeconfig := filepath.Join(c.dir, "cli.kubeconfig")
	data, err := os.ReadFile(c.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c.run("--kubeconfig", kubeconfig, "config", "set-context", "--current", "--namespace", "team")
	p := &plugin{t: t, bin: bin, env: append(os.Environ(), "KUBECONFIG="+kubeconfig, "INFERGATE_CLI_CONFIG="+filepath.Join(c.dir, "cli.yaml"),
		"INFERGATE_GATEWAY_URL="+c.gateway, "INFERGATE_TOKEN="+c.token, "OPENAI_API_KEY=", "OPENAI_BASE_URL=")}
	p.ok("wait", "model", "llama", "--timeout", "30s")

	t.Run("models list, get and --all", func(t *testing.T) {
		out := p.ok("models", "list")
		if !regexp.MustCompile(`(?m)^ID\s+SERVED MODEL\s+READY PROVIDERS\s+AGE\n^team/llama\s+meta/llama-3.1-8b-instruct\s+1\s+\d+[smh]\n?$`).MatchString(out) {
			t.Errorf("models list:\n%s", out)
		}
		out = p.ok("models", "list", "--all")
		if !regexp.MustCompile(`(?m)^team/orphan\s+nobody/serves-this\s+0\s+false\s+NoReadyProvider\s+`).MatchString(out) ||
			!regexp.MustCompile(`(?m)^team/llama\s+meta/llama-3.1-8b-instruct\s+1\s+true\s+-\s+`).MatchString(out) {
			t.Errorf("models list --all:\n%s", out)
		}
		var list struct {
			Object string
			Data   []struct {
				ID             string `json:"id"`
				OwnedBy        string `json:"owned_by"`
				Routable       bool   `json:"routable"`
				ServedModel    string `json:"served_model"`
				ReadyProviders int    `json:"ready_providers"`
				Reason         string `json:"reason"`
			}
		}
		if err := json.Unmarshal([]byte(p.ok("models", "list", "--all", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		if list.Object != "list" || len(list.Data) != 2 || list.Data[0].ID != "team/llama" || !list.Data[0].Routable ||
			list.Data[0].ServedModel != served || list.Data[0].ReadyProviders != 1 || list.Data[1].Reason != "NoReadyProvider" {
			t.Errorf("models list --all -o json: %+v", list)
		}
		if out := p.ok("models", "list", "-o", "name"); out != "team/llama\n" {
			t.Errorf("-o name: %q", out)
		}
		if out := p.ok("models", "list", "-o", "yaml"); !strings.Contains(out, "id: team/llama") {
			t.Errorf("-o yaml:\n%s", out)
		}
		if out := p.ok("models", "list", "-A", "-o", "wide"); !strings.Contains(out, "OWNED BY") || !strings.Contains(out, "team/llama") {
			t.Errorf("-A -o wide:\n%s", out)
		}
		if out := p.ok("models", "get", "team/llama", "-o", "json"); !strings.Contains(out, `"id": "team/llama"`) {
			t.Errorf("models get -o json:\n%s", out)
		}
		p.fails(1, []string{"the gateway answered 404", "ModelEntity team/orphan exists but is not routable: NoReadyProvider"}, "models", "get", "orphan")
		p.fails(1, []string{"the gateway answered 404", "There is no ModelEntity ghost in namespace team"}, "models", "get", "ghost")
	})

	t.Run("providers list", func(t *testing.T) {
		out := p.ok("providers", "list")
		if !regexp.MustCompile(`(?m)^sim\s+` + regexp.QuoteMeta(up.URL) + `\s+meta/llama-3.1-8b-instruct\s+true\s+Ready\s+`).MatchString(out) {
			t.Errorf("providers list:\n%s", out)
		}
		var list struct {
			Items []struct {
				Name     string   `json:"name"`
				Models   []string `json:"models"`
				Routable string   `json:"routable"`
			}
		}
		if err := json.Unmarshal([]byte(p.ok("providers", "list", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 1 || list.Items[0].Routable != "true" || !slices.Equal(list.Items[0].Models, []string{served}) {
			t.Errorf("providers list -o json: %+v", list)
		}
	})

	t.Run("chat: one-shot, piped, JSON, not streamed, with --provider", func(t *testing.T) {
		if out := p.ok("chat", "llama", "Say hello"); !strings.Contains(out, "Hello from sim.") {
			t.Errorf("one-shot chat: %q", out)
		}
		if r := p.run("Say hello from stdin", "chat", "team/llama", "--max-tokens", "16", "--temperature", "0.2", "--system-message", "Be brief"); r.code != 0 || !strings.Contains(r.out, "Hello from sim.") {
			t.Errorf("piped chat: %+v", r)
		}
		var resp struct {
			Model   string `json:"model"`
			Choices []struct{ Message struct{ Content string } }
		}
		if err := json.Unmarshal([]byte(p.ok("chat", "llama", "Hi", "-o", "json")), &resp); err != nil || resp.Model != "team/llama" || len(resp.Choices) == 0 {
			t.Errorf("chat -o json: %+v %v", resp, err)
		}
		if out := p.ok("chat", "llama", "Hi", "--no-stream"); !strings.Contains(out, "Hello from sim.") {
			t.Errorf("chat --no-stream: %q", out)
		}
		if out := p.ok("chat", served, "Hi", "--provider", "sim"); !strings.Contains(out, "Hello from sim.") {
			t.Errorf("chat --provider: %q", out)
		}
	})

	t.Run("chat on a terminal is a conversation", func(t *testing.T) {
		script, err := exec.LookPath("script") // util-linux: runs a command on a pseudo-terminal
		if err != nil {
			t.Skip("no script(1) to give the plugin a terminal")
		}
		cmd := exec.Command(script, "-q", "-e", "-c", p.bin+" chat llama --system-message 'Be brief'", "/dev/null")
		cmd.Env = p.env
		cmd.Stdin = strings.NewReader("Hello\nAnd again\nexit\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(string(out), "Chatting with team/llama") || strings.Count(string(out), "Hello from sim.") != 2 {
			t.Errorf("a conversation of two turns:\n%s", out)
		}
	})

	t.Run("chat streams the answer as it is written", func(t *testing.T) {
		cmd := exec.Command(p.bin, "chat", "llama", "Tell me a story")
		cmd.Env = p.env
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(stdout)
		if _, err := r.ReadByte(); err != nil {
			t.Fatal(err)
		}
		first := time.Since(start)
		rest, _ := r.ReadString(0)
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
		// Five chunks, 150 ms apart: the first arrives well before the last.
		if total := time.Since(start); total-first < 400*time.Millisecond || !strings.HasSuffix(rest, "\n") {
			t.Errorf("first output after %s, all of it after %s: not streamed", first, total)
		}
	})

	t.Run("the raw provider and model routes", func(t *testing.T) {
		r := p.run("", "gateway", "provider", "get", "v1/models", "--name", "sim")
		if r.code != 0 || !strings.Contains(r.out, `"id":"`+served+`"`) || !strings.Contains(r.err, "200 OK") {
			t.Errorf("gateway provider get: %+v", r)
		}
		body := filepath.Join(c.dir, "request.json")
		if err := os.WriteFile(body, []byte(`{"messages":[{"role":"user","content":"hi"}]}`), 0o600); err != nil {
			t.Fatal(err)
		}
		if out := p.ok("gateway", "model", "post", "v1/chat/completions", "--name", "llama", "--body", "@"+body); !strings.Contains(out, `"model":"team/llama"`) {
			t.Errorf("gateway model post: %s", out)
		}
		out := p.ok("gateway", "provider", "post", "v1/chat/completions", "--name", "sim", "--body", `{"model":"`+served+`","messages":[]}`)
		if !strings.Contains(out, `"model":"`+served+`"`) {
			t.Errorf("gateway provider post: %s", out)
		}
		p.fails(1, []string{"the gateway answered 404", "Model provider not found for team/nope"}, "gateway", "provider", "get", "v1/models", "--name", "nope")
	})

	t.Run("get-url", func(t *testing.T) {
		base := c.gateway + "/apis/inference-gateway/v2/workspaces/team"
		for args, want := range map[string]string{
			"get-url":                              base + "/openai/-/v1\n",
			"get-url --provider sim":               base + "/provider/sim/-\n",
			"get-url --model llama -n team":        base + "/model/llama/-\n",
			"get-url --gateway-url http://gw.test": "http://gw.test/apis/inference-gateway/v2/workspaces/team/openai/-/v1\n",
		} {
			if out := p.ok(strings.Fields(args)...); out != want {
				t.Errorf("%s: %q, want %q", args, out, want)
			}
		}
		p.fails(2, []string{"give --provider or --model, not both"}, "get-url", "--provider", "a", "--model", "b")
	})

	t.Run("wait", func(t *testing.T) {
		if out := p.ok("wait", "provider", "sim"); out != "provider team/sim is routable\n" {
			t.Errorf("wait provider: %q", out)
		}
		p.fails(1, []string{"model team/orphan is not routable after 1s"}, "wait", "model", "orphan", "--timeout", "1s")
	})

	t.Run("a saved gateway URL per context", func(t *testing.T) {
		env := slices.DeleteFunc(slices.Clone(p.env), func(e string) bool { return strings.HasPrefix(e, "INFERGATE_GATEWAY_URL=") })
		saved := &plugin{t: t, bin: bin, env: env}
		if out := saved.ok("config", "set", "--gateway-url", c.gateway); !strings.Contains(out, c.gateway) {
			t.Errorf("config set: %q", out)
		}
		if out := saved.ok("config", "view"); !strings.Contains(out, "gatewayURL: "+c.gateway) {
			t.Errorf("config view:\n%s", out)
		}
		if out := saved.ok("models", "list", "-o", "name"); out != "team/llama\n" {
			t.Errorf("with the saved URL: %q", out)
		}
		saved.ok("config", "set", "--unset")
	})

	t.Run("the token from --token, the current context's credentials travel to the API server too", func(t *testing.T) {
		env := slices.DeleteFunc(slices.Clone(p.env), func(e string) bool { return strings.HasPrefix(e, "INFERGATE_TOKEN=") })
		withFlag := &plugin{t: t, bin: bin, env: env}
		if out := withFlag.ok("models", "list", "-o", "name", "--token", c.token); out != "team/llama\n" {
			t.Errorf("--token: %q", out)
		}
	})

	t.Run("errors say what to do", func(t *testing.T) {
		p.fails(1, []string{"the gateway answered 404", "Model entity not found for team/ghost"}, "chat", "ghost", "Hi")
		p.fails(1, []string{"the gateway answered 422", `"meta/llama-3.1-8b-instruct" is not a model entity name`,
			"registered as meta-llama-3-1-8b-instruct", "--provider P"}, "chat", "meta/llama-3.1-8b-instruct", "Hi")
		p.fails(1, []string{"cannot reach the gateway at http://127.0.0.1:1 (from --gateway-url)", "give its URL with --gateway-url"},
			"models", "list", "--gateway-url", "http://127.0.0.1:1")
		noToken := &plugin{t: t, bin: bin, env: slices.DeleteFunc(slices.Clone(p.env), func(e string) bool { return strings.HasPrefix(e, "INFERGATE_TOKEN=") })}
		noToken.fails(1, []string{"the gateway answered 401", "the current context has no bearer token for the gateway", "kubectl create token"},
			"models", "list")
		p.fails(2, []string{"want MODEL and an optional PROMPT", "See 'kubectl inference chat -h'"}, "chat")
		p.fails(2, []string{"--output \"xml\" is not one of"}, "models", "list", "-o", "xml")
	})
}
