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
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/procfs"

	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

// TestQuickstart runs the quickstart as a newcomer would, headless: it waits for the ready line,
// follows the printed instructions (kubectl, every curl line, the OpenAI SDK), then presses
// Ctrl-C and checks that nothing it started is left running. Before that, a first run in the
// same directory is killed outright (SIGKILL): the second run must clean up after it.
func TestQuickstart(t *testing.T) {
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "quickstart")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	state := filepath.Join(dir, "state")
	t.Cleanup(func() {
		for _, p := range processesUsing(t, state) {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	})

	killed := startQuickstart(t, bin, assets, state)
	killed.waitReady(t)
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-killed.exited

	q := startQuickstart(t, bin, assets, state)
	out := q.waitReady(t)

	// kubectl, as printed.
	env := regexp.MustCompile(`export KUBECONFIG=(\S+) PATH=(\S+):(\S+):\$PATH`).FindStringSubmatch(out)
	if env == nil {
		t.Fatalf("no export line in:\n%s", out)
	}
	kubectl := func(args ...string) ([]byte, error) {
		return exec.Command(filepath.Join(env[3], "kubectl"), append([]string{"--kubeconfig", env[1]}, args...)...).CombinedOutput()
	}
	get, err := kubectl("get", "inference")
	if err != nil || !regexp.MustCompile(`(?m)^modelentity\.inference\.infergate\.dev/llama-3-1-8b-instruct\s.*True`).Match(get) {
		t.Errorf("kubectl get inference: %v\n%s", err, get)
	}
	// The gateway reads the simulator's queue from its metrics, as it would a vLLM server's.
	wide, err := kubectl("get", "providers", "-o", "wide")
	if err != nil || !regexp.MustCompile(`(?m)^simulator\s.*\sTrue\s+Ready\s+MetricsRead\s`).Match(wide) {
		t.Errorf("kubectl get providers -o wide: %v\n%s", err, wide)
	}
	// And the manager's scraper reads them on every replica: its gauges say so.
	scraped := regexp.MustCompile(`(?m)^infergate_provider_metrics_up\{engine="vLLM",provider="simulator",workspace="default"\} 1$`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + q.metrics + "/metrics")
		var body []byte
		if err == nil {
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if scraped.Match(body) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager does not read the simulator's metrics: %v\n%s", err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	canI := regexp.MustCompile(`(?m)^\s*kubectl (auth can-i .*)$`).FindStringSubmatch(out)
	if canI == nil {
		t.Fatalf("no kubectl auth can-i line in:\n%s", out)
	}
	if got, err := kubectl(strings.Fields(canI[1])...); err != nil || strings.TrimSpace(string(got)) != "yes" {
		t.Errorf("kubectl %s: %v %s", canI[1], err, got)
	}

	// The budget demonstration: the budget's caller was refused, with the budget named.
	refusal := regexp.MustCompile(`request \d: 429 Too Many Requests  x-ratelimit-remaining-requests: 0\n\s+Retry-After: \d+ .*\n\s+(\{.*\})`).FindStringSubmatch(out)
	if refusal == nil || !strings.Contains(refusal[1], `"budget":"default/demo"`) || !strings.Contains(refusal[1], "rate_limit_exceeded") {
		t.Errorf("the quickstart does not show InferenceBudget default/demo refusing a request:\n%s", out)
	}
	if got, err := kubectl("get", "inferencebudgets", "-n", "default"); err != nil || !strings.Contains(string(got), "demo") {
		t.Errorf("kubectl get inferencebudgets: %v\n%s", err, got)
	}

	// The token, exported as printed; every curl and SDK line below uses it.
	tokenLine := regexp.MustCompile(`(?m)^\s*export INFERGATE_TOKEN=(\S+)$`).FindStringSubmatch(out)
	if tokenLine == nil {
		t.Fatalf("no export INFERGATE_TOKEN line in:\n%s", out)
	}
	token := tokenLine[1]

	// The kubectl plugin, as printed: kubectl finds kubectl-inference on the printed PATH, the
	// gateway's URL from the setting the quickstart saved, the token from INFERGATE_TOKEN.
	cliConfig := cliConfigOf(state)
	plugin := regexp.MustCompile(`(?m)^\s*kubectl inference (.*)$`).FindAllStringSubmatch(out, -1)
	if len(plugin) != 2 {
		t.Fatalf("want 2 kubectl inference lines, got %d in:\n%s", len(plugin), out)
	}
	for i, want := range []string{"default/llama-3-1-8b-instruct", "Hello from simulator."} {
		args := append([]string{"inference"}, shellWords(t, plugin[i][1])...)
		cmd := exec.Command(filepath.Join(env[3], "kubectl"), args...)
		cmd.Env = append(os.Environ(), "KUBECONFIG="+env[1], "PATH="+env[2]+":"+env[3]+":"+os.Getenv("PATH"), "INFERGATE_TOKEN="+token, "INFERGATE_CLI_CONFIG="+cliConfig)
		got, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(got), want) {
			t.Errorf("kubectl inference %s: %v\n%s", plugin[i][1], err, got)
		}
	}

	// Every curl line, as printed: the method, URL, headers and body are what the user would
	// send, with $INFERGATE_TOKEN expanded as the shell would.
	curls := regexp.MustCompile(`(?m)^\s*curl -sN? (\S+)((?: -H (?:'[^']*'|"[^"]*"))*)(?: -d '([^']*)')?$`).FindAllStringSubmatch(out, -1)
	if len(curls) != 5 {
		t.Fatalf("want 5 curl lines (chat, stream, models, model route, provider route), got %d in:\n%s", len(curls), out)
	}
	headerArg := regexp.MustCompile(`-H (?:'([^']*)'|"([^"]*)")`)
	for _, c := range curls {
		url, body := c[1], c[3]
		method := http.MethodGet
		if body != "" {
			method = http.MethodPost
		}
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range headerArg.FindAllStringSubmatch(c[2], -1) {
			value := h[1] + strings.ReplaceAll(h[2], "$INFERGATE_TOKEN", token) // double quotes expand
			name, v, _ := strings.Cut(value, ": ")
			req.Header.Set(name, v)
		}
		if req.Header.Get("Authorization") != "Bearer "+token {
			t.Errorf("curl %s does not send the token", url)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := `"choices"`
		switch {
		case strings.Contains(body, `"stream":true`):
			want = "data: [DONE]"
		case body == "":
			want = `"id":"default/llama-3-1-8b-instruct"`
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(got), want) {
			t.Errorf("curl %s -d '%s': %s\n%s", url, body, resp.Status, got)
		}
		// Without the token, as the quickstart says: 401.
		req.Header.Del("Authorization")
		req.Body = io.NopCloser(strings.NewReader(body))
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("curl %s without the token: %v %v, want 401", url, resp.Status, err)
		} else {
			resp.Body.Close()
		}
	}

	// The OpenAI SDK with the printed base URLs and models: the Python block's calls, made with
	// the Go SDK (no Python packages can be installed here), and the Go lines.
	ws := regexp.MustCompile(`(?m)^ws = "([^"]+)"$`).FindStringSubmatch(out)
	if !strings.Contains(out, `token = os.environ["INFERGATE_TOKEN"]`) {
		t.Errorf("the Python SDK block does not take the token from INFERGATE_TOKEN:\n%s", out)
	}
	calls := regexp.MustCompile(`(?m)^(\w+) = OpenAI\(base_url=ws \+ "([^"]+)", api_key=token\)`).FindAllStringSubmatch(out, -1)
	creates := regexp.MustCompile(`(?m)^(?:print\(|for chunk in )(\w+)\.chat\.completions\.create\(model="([^"]+)", messages=hello(, stream=True)?\)`).FindAllStringSubmatch(out, -1)
	goBase := regexp.MustCompile(`option\.WithBaseURL\("([^"]+)"\), option\.WithAPIKey\(os\.Getenv\("INFERGATE_TOKEN"\)\)`).FindStringSubmatch(out)
	if ws == nil || len(calls) != 3 || len(creates) != 4 || goBase == nil {
		t.Fatalf("the SDK lines are not as expected (ws %v, %d clients, %d calls, Go %v):\n%s", ws, len(calls), len(creates), goBase, out)
	}
	clients := map[string]openai.Client{}
	for _, c := range calls {
		clients[c[1]] = openai.NewClient(option.WithBaseURL(ws[1]+c[2]+"/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hello := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello!")}
	for _, c := range creates {
		client, ok := clients[c[1]]
		if !ok {
			t.Fatalf("no client %q in:\n%s", c[1], out)
		}
		params := openai.ChatCompletionNewParams{Model: c[2], Messages: hello}
		if c[3] != "" {
			stream := client.Chat.Completions.NewStreaming(ctx, params)
			var content string
			for stream.Next() {
				if ch := stream.Current().Choices; len(ch) > 0 {
					content += ch[0].Delta.Content
				}
			}
			if err := stream.Err(); err != nil || content == "" {
				t.Errorf("%s streaming chat with %s: %v, content %q", c[1], c[2], err, content)
			}
			continue
		}
		chat, err := client.Chat.Completions.New(ctx, params)
		if err != nil || len(chat.Choices) == 0 || chat.Choices[0].Message.Content == "" {
			t.Errorf("%s chat with %s: %v %+v", c[1], c[2], err, chat)
		}
	}
	list := clients["client"]
	models, err := list.Models.List(ctx)
	if err != nil || len(models.Data) != 1 || models.Data[0].ID != "default/llama-3-1-8b-instruct" {
		t.Errorf("models list: %v %+v", err, models)
	}
	goClient := openai.NewClient(option.WithBaseURL(goBase[1]), option.WithAPIKey(token), option.WithMaxRetries(0))
	chat, err := goClient.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "default/llama-3-1-8b-instruct", Messages: hello})
	if err != nil || len(chat.Choices) == 0 || chat.Choices[0].Message.Content == "" || chat.Model != "default/llama-3-1-8b-instruct" {
		t.Fatalf("chat completion: %v %+v", err, chat)
	}

	// Ctrl-C: everything stops, nothing is left behind, the killed run's processes included.
	if err := syscall.Kill(-q.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-q.exited:
		if err != nil {
			t.Errorf("quickstart exited with %v after Ctrl-C", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("quickstart still running 60s after Ctrl-C")
	}
	if left := processesUsing(t, state); len(left) > 0 {
		t.Errorf("processes left running after Ctrl-C: %v", left)
	}
	if saved, _ := os.ReadFile(cliConfig); strings.Contains(string(saved), "infergate-quickstart") {
		t.Errorf("the kubectl plugin's setting for the quickstart's context outlives it:\n%s", saved)
	}
	if !strings.Contains(q.stderr.String(), "left running by an earlier quickstart") {
		t.Errorf("the second run did not stop the first run's control plane:\n%s", q.stderr.String())
	}
}

// quickstart is one run of the quickstart binary.
type quickstart struct {
	cmd     *exec.Cmd
	stderr  *testutil.SyncBuffer
	printed strings.Builder // stdout up to the ready line
	ready   chan struct{}
	exited  chan error
	metrics string // address of the manager's /metrics
}

// startQuickstart runs the quickstart with free addresses and its state in dir.
func startQuickstart(t *testing.T, bin, assets, dir string) *quickstart {
	t.Helper()
	addrs := testutil.FreeAddrs(t, 4)
	q := &quickstart{stderr: &testutil.SyncBuffer{}, ready: make(chan struct{}), exited: make(chan error, 1), metrics: addrs[3]}
	q.cmd = exec.Command(bin, "--dir", dir, "--gateway-address", addrs[0], "--simulator-address", addrs[1],
		"--probe-address", addrs[2], "--metrics-address", q.metrics)
	q.cmd.Env = append(os.Environ(), "KUBEBUILDER_ASSETS="+assets, "INFERGATE_CLI_CONFIG="+cliConfigOf(dir))
	// Its own process group, as a shell gives a foreground job: Ctrl-C signals the whole group.
	q.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	q.cmd.Stderr = q.stderr
	stdout, err := q.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := q.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == readyLine {
				close(q.ready)
				break
			}
			q.printed.WriteString(sc.Text() + "\n")
		}
		_, _ = io.Copy(io.Discard, stdout)
		q.exited <- q.cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-q.cmd.Process.Pid, syscall.SIGKILL)
		if t.Failed() {
			t.Logf("quickstart stderr:\n%s", q.stderr.String())
			if logs, err := os.ReadFile(filepath.Join(dir, "manager.log")); err == nil {
				t.Logf("manager log:\n%s", logs)
			}
		}
	})
	return q
}

// waitReady waits for the ready line and returns what was printed before it.
func (q *quickstart) waitReady(t *testing.T) string {
	t.Helper()
	select {
	case <-q.ready:
		return q.printed.String()
	case err := <-q.exited:
		t.Fatalf("quickstart exited before it was ready: %v\n%s", err, q.stderr.String())
	case <-time.After(5 * time.Minute):
		t.Fatal("quickstart not ready after 5 minutes")
	}
	return ""
}

// processesUsing lists the running processes whose command line mentions dir: the manager
// and simulator binaries live there, as do etcd's data and the API server's certificates.
// Zombies (exited, waiting for their parent to read their status) are left out.
func processesUsing(t *testing.T, dir string) []running {
	t.Helper()
	procs, err := procfs.AllProcs()
	if err != nil {
		t.Fatal(err)
	}
	var found []running
	for _, p := range procs {
		args, err := p.CmdLine()
		if err != nil || !strings.Contains(strings.Join(args, " "), dir) {
			continue // gone, or not ours
		}
		if stat, err := p.Stat(); err == nil && stat.State != "Z" {
			found = append(found, running{PID: p.PID, Args: args})
		}
	}
	return found
}

// running is a running process and its command line.
type running struct {
	PID  int
	Args []string
}

func (p running) String() string { return strconv.Itoa(p.PID) + ": " + strings.Join(p.Args, " ") }

// cliConfigOf is where the quickstart of state dir saves the kubectl plugin's settings in the
// test, instead of the user's config directory.
func cliConfigOf(dir string) string {
	return filepath.Join(filepath.Dir(dir), "kubectl-inference.yaml")
}

// shellWords splits a printed command line as a shell would, for the double quotes it uses.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var word strings.Builder
	quoted, inWord := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, word.String())
				word.Reset()
			}
			inWord = false
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unbalanced quotes in %q", line)
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}
