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

// Command quickstart runs infergate on this machine with no cluster: a local kube-apiserver and
// etcd (the envtest binaries of hack/envtest-assets.sh) with the CRDs installed, the simulator as
// an OpenAI-compatible upstream, and the manager with its gateway on localhost. It applies a
// Provider for the simulator and the sample ModelEntity, waits until the entity is Ready, prints
// what to paste, and runs until Ctrl-C, which stops every process it started.
//
//	make quickstart
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/infergate/infergate/internal/cli"
	"github.com/infergate/infergate/internal/testenv"
)

const (
	workspace       = "default"
	controlPlaneDir = "control-plane"         // etcd's data and the API server's certificates, under --dir
	entity          = "llama-3-1-8b-instruct" // config/samples/inference_v1alpha1_modelentity.yaml
	servedModel     = "meta/llama-3.1-8b-instruct"
	serviceAccount  = "quickstart" // calls the gateway with its token
	// budgetCaller is held by InferenceBudget budgetName to budgetRPM requests a minute.
	budgetCaller = "budget-demo"
	budgetName   = "demo"
	budgetRPM    = 2
	cliContext   = "infergate-quickstart" // the kubeconfig context, and the kubectl plugin's setting
	// secretLabel marks the Secrets the manager reads, as the chart's default does.
	secretLabel = "inference.infergate.dev/api-key=true"
	// ReadyLine is printed once everything is up; scripts and the test wait for it.
	readyLine = "infergate quickstart is ready"
)

var (
	gatewayAddr   = flag.String("gateway-address", "127.0.0.1:8000", "address of the gateway")
	simulatorAddr = flag.String("simulator-address", "127.0.0.1:9000", "address of the simulator (the upstream)")
	probeAddr     = flag.String("probe-address", "127.0.0.1:8081", "address of the manager's /healthz and /readyz")
	metricsAddr   = flag.String("metrics-address", "127.0.0.1:8080", "address of the manager's /metrics")
	stateDir      = flag.String("dir", "", "directory for binaries, kubeconfig, etcd data and logs (default: a new temporary directory, removed at exit)")
)

func main() {
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx); err != nil {
		if ctx.Err() != nil {
			// Interrupted while starting: what failed is the interruption's doing.
			fmt.Fprintln(os.Stderr, "quickstart: interrupted; everything it started is stopped")
			os.Exit(130)
		}
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

// step prints what is happening now.
func step(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func run(ctx context.Context) (err error) {
	reapOrphans()
	for _, a := range []string{*gatewayAddr, *simulatorAddr, *probeAddr, *metricsAddr} {
		if err := free(a); err != nil {
			return err
		}
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	dir := *stateDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "infergate-quickstart-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if dir, err = filepath.Abs(dir); err != nil {
		return err
	}

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		step("building kube-apiserver, etcd and kubectl (first time about 7-10 minutes; later runs reuse them)")
		script := exec.CommandContext(ctx, filepath.Join(root, "hack", "envtest-assets.sh"))
		script.Stderr = os.Stderr
		out, err := script.Output()
		if err != nil {
			return fmt.Errorf("hack/envtest-assets.sh: %w", err)
		}
		assets = strings.TrimSpace(string(out))
		os.Setenv("KUBEBUILDER_ASSETS", assets)
	}

	bin := filepath.Join(dir, "bin")
	step("building the manager, the simulator and the kubectl plugin")
	for name, pkg := range map[string]string{"manager": "./cmd", "simulator": "./cmd/simulator", "kubectl-inference": "./cmd/kubectl-inference"} {
		build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, name), pkg)
		build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build %s: %w", pkg, err)
		}
	}

	step("starting kube-apiserver and etcd")
	grants, err := testenv.GatewayAPICRDs()
	if err != nil {
		return err
	}
	plane := filepath.Join(dir, controlPlaneDir)
	env, err := testenv.Start(testenv.Options{ExtraCRDPaths: []string{grants}, Dir: plane})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping kube-apiserver and etcd")
		if serr := env.Stop(); serr != nil && err == nil {
			err = fmt.Errorf("stop the control plane: %w", serr)
		}
		_ = os.RemoveAll(plane)
	}()
	kubeconfig, err := testenv.WriteKubeconfig(env, dir)
	if err != nil {
		return err
	}
	// A context name of its own, under which the kubectl plugin's setting is saved.
	if err := renameContext(kubeconfig, cliContext); err != nil {
		return err
	}
	kubectl := filepath.Join(assets, "kubectl")
	k := func(stdin string, args ...string) error {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	// kOut runs kubectl and returns its standard output, trimmed.
	kOut := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.TrimSpace(string(out)), nil
	}

	key, err := randomKey()
	if err != nil {
		return err
	}
	step("starting the simulator on http://%s", *simulatorAddr)
	sim, err := start(filepath.Join(dir, "simulator.log"), []string{"SIMULATOR_API_KEY=" + key},
		filepath.Join(bin, "simulator"), "--listen", *simulatorAddr, "--models", servedModel, "--chunk-delay", "50ms",
		// A vLLM server in miniature: a batch of 8, a queue, prefill time and a prefix cache.
		"--max-num-seqs", "8", "--prefill-time-per-token", "50us", "--kv-cache-blocks", "4096")
	if err != nil {
		return err
	}
	defer sim.stop("simulator")

	step("starting the manager (logs: %s)", filepath.Join(dir, "manager.log"))
	mgr, err := start(filepath.Join(dir, "manager.log"), nil, filepath.Join(bin, "manager"),
		"--kubeconfig", kubeconfig, "--gateway-bind-address", *gatewayAddr,
		"--health-probe-bind-address", *probeAddr, "--metrics-bind-address", *metricsAddr,
		"--log-format", "console", "--secret-label-selector", secretLabel,
		"--allow-local-upstreams") // the simulator listens on loopback
	if err != nil {
		return err
	}
	defer mgr.stop("manager")
	if err := waitFor(ctx, 60*time.Second, mgr, func() error {
		resp, err := http.Get("http://" + *probeAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("the manager did not become ready (see %s): %w", filepath.Join(dir, "manager.log"), err)
	}

	step("applying a Provider for the simulator and the sample ModelEntity")
	if err := k("", "create", "namespace", "system"); err != nil {
		return err
	}
	// On stdin, not on the command line: a key has no business in `ps` or in an error message.
	secret := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: simulator-api-key
  namespace: %s
  labels:
    %s
stringData:
  api-key: %s
`, workspace, strings.Replace(secretLabel, "=", `: "`, 1)+`"`, key)
	if err := k(secret, "apply", "-f", "-"); err != nil {
		return err
	}
	provider := fmt.Sprintf(`apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata:
  name: simulator
  namespace: %s
spec:
  url: http://%s
  apiKeySecretRef:
    name: simulator-api-key
    key: api-key
  metrics: {}   # the gateway reads the server's queue from /metrics, as vLLM serves it
`, workspace, *simulatorAddr)
	if err := k(provider, "apply", "-f", "-"); err != nil {
		return err
	}
	if err := k("", "apply", "-n", workspace, "-f", filepath.Join(root, "config", "samples", "inference_v1alpha1_modelentity.yaml")); err != nil {
		return err
	}
	step("waiting until ModelEntity %s is Ready", entity)
	if err := k("", "wait", "-n", workspace, "--for=condition=Ready", "provider/simulator", "modelentity/"+entity, "--timeout=60s"); err != nil {
		return err
	}

	// The gateway authenticates every request (--gateway-auth=kubernetes, the default): a
	// ServiceAccount that may call the models and the provider of the workspace, and a token
	// for it from the TokenRequest API, as an app would get.
	step("creating ServiceAccount %s/%s, allowed to call models and providers there, and a token for it", workspace, serviceAccount)
	if err := k("", "apply", "--server-side", "-k", filepath.Join(root, "config", "access")); err != nil {
		return err
	}
	if err := k("", "create", "serviceaccount", "-n", workspace, serviceAccount); err != nil {
		return err
	}
	for _, role := range []string{"model-user", "provider-user"} {
		if err := k("", "create", "rolebinding", "-n", workspace, serviceAccount+"-"+role, "--clusterrole", "infergate-"+role,
			"--serviceaccount", workspace+":"+serviceAccount); err != nil {
			return err
		}
	}
	token, err := kOut("create", "token", "-n", workspace, serviceAccount, "--duration", "24h")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600); err != nil {
		return err
	}

	// An InferenceBudget holds a second ServiceAccount to a few requests a minute; the
	// quickstart sends it past them and shows the refusal.
	step("creating InferenceBudget %s/%s: ServiceAccount %s may send %d requests a minute", workspace, budgetName, budgetCaller, budgetRPM)
	budgetToken, err := budgetDemo(k, kOut)
	if err != nil {
		return err
	}

	// kubectl inference finds the gateway with no flags: its URL is saved for the context.
	if err := cli.SaveGatewayURL(kubeconfig, cliContext, "http://"+*gatewayAddr); err != nil {
		return fmt.Errorf("save the gateway URL for kubectl inference: %w", err)
	}
	defer func() { _ = cli.ForgetGatewayURLs(cliContext) }() // a killed earlier run's too

	printUsage(os.Stdout, dir, kubeconfig, assets, token)
	if err := showBudget(ctx, os.Stdout, budgetToken); err != nil {
		return err
	}
	fmt.Println(readyLine)

	var exited error
	select {
	case <-ctx.Done():
	case <-mgr.exited:
		exited = fmt.Errorf("the manager exited (see %s)", filepath.Join(dir, "manager.log"))
	case <-sim.exited:
		exited = fmt.Errorf("the simulator exited (see %s)", filepath.Join(dir, "simulator.log"))
	}
	if exited != nil {
		// Ctrl-C reaches the whole foreground process group: a child may stop on it before
		// this process has seen it. That is a stop, not a failure.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			return exited
		}
	}
	fmt.Fprintln(os.Stderr)
	step("stopping")
	return nil
}

// renameContext gives the current context of kubeconfig another name.
func renameContext(kubeconfig, name string) error {
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		return err
	}
	cfg.Contexts[name] = cfg.Contexts[cfg.CurrentContext]
	delete(cfg.Contexts, cfg.CurrentContext)
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, kubeconfig)
}

func printUsage(w io.Writer, dir, kubeconfig, assets, token string) {
	base := "http://" + *gatewayAddr + "/apis/inference-gateway/v2/workspaces/" + workspace
	openaiBase := base + "/openai/-/v1"
	model := workspace + "/" + entity
	chat := `{"model":"` + model + `","messages":[{"role":"user","content":"Hello!"}]}`
	stream := `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"Hello!"}]}`
	direct := `{"model":"` + servedModel + `","messages":[{"role":"user","content":"Hello!"}]}`
	auth := `-H "Authorization: Bearer $INFERGATE_TOKEN"`
	fmt.Fprintf(w, `
infergate is running. Ctrl-C stops everything.

  gateway     http://%[1]s  (every request needs a Kubernetes token)
  simulator   http://%[2]s  (the upstream of Provider default/simulator, serving %[3]s)
  logs        %[4]s/manager.log, %[4]s/simulator.log

Look at the cluster, and take the token of ServiceAccount %[16]s/%[17]s (valid 24 hours, also in
%[4]s/token): it may call the models and the provider of workspace %[16]s.

  export KUBECONFIG=%[5]s PATH=%[4]s/bin:%[6]s:$PATH
  export INFERGATE_TOKEN=%[15]s
  kubectl get inference
  kubectl get providers -o wide
  kubectl describe modelentity %[7]s
  kubectl auth can-i create modelentities/%[7]s --subresource=proxy -n %[16]s --as=system:serviceaccount:%[16]s:%[17]s

The kubectl plugin (kubectl-inference, on the PATH above; the gateway's URL is saved for the
context, the token is taken from INFERGATE_TOKEN):

  kubectl inference models list --all
  kubectl inference chat %[7]s "Write a haiku about Kubernetes"

Chat, then stream, through the OpenAI-compatible route:

  curl -s %[8]s/chat/completions %[18]s -H 'Content-Type: application/json' -d '%[9]s'
  curl -sN %[8]s/chat/completions %[18]s -H 'Content-Type: application/json' -d '%[10]s'

List the models of the workspace:

  curl -s %[8]s/models %[18]s

The model route (one entity; the body's model is rewritten) and the provider route (one upstream):

  curl -s %[11]s/model/%[12]s/-/v1/chat/completions %[18]s -H 'Content-Type: application/json' -d '%[9]s'
  curl -s %[11]s/provider/simulator/-/v1/chat/completions %[18]s -H 'Content-Type: application/json' -d '%[13]s'

Without the token the gateway answers 401; in another workspace, 403.

The same with the OpenAI Python SDK (pip install openai), the token as the API key: chat,
stream, models, model route, provider route. Paste it into the shell where you exported
INFERGATE_TOKEN:

python3 - <<'EOF'
import os
from openai import OpenAI
ws = "%[11]s"
token = os.environ["INFERGATE_TOKEN"]
hello = [{"role": "user", "content": "Hello!"}]
client = OpenAI(base_url=ws + "/openai/-/v1", api_key=token)
print(client.chat.completions.create(model="%[14]s", messages=hello).choices[0].message.content)
for chunk in client.chat.completions.create(model="%[14]s", messages=hello, stream=True):
    print(chunk.choices[0].delta.content or "", end="", flush=True)
print()
print([m.id for m in client.models.list()])
model = OpenAI(base_url=ws + "/model/%[12]s/-/v1", api_key=token)
print(model.chat.completions.create(model="%[14]s", messages=hello).choices[0].message.content)
provider = OpenAI(base_url=ws + "/provider/simulator/-/v1", api_key=token)
print(provider.chat.completions.create(model="%[3]s", messages=hello).choices[0].message.content)
EOF

With the OpenAI Go SDK (github.com/openai/openai-go/v3), the token as the API key:

  client := openai.NewClient(option.WithBaseURL("%[8]s/"), option.WithAPIKey(os.Getenv("INFERGATE_TOKEN")))
  resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "%[14]s",
      Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello!")}})

`, *gatewayAddr, *simulatorAddr, servedModel, dir, kubeconfig, assets, entity,
		openaiBase, chat, stream, base, entity, direct, model, token, workspace, serviceAccount, auth)
}

// budgetDemo applies InferenceBudget budgetName and ServiceAccount budgetCaller, allowed to call
// the models, and returns a token for it.
func budgetDemo(k func(stdin string, args ...string) error, kOut func(args ...string) (string, error)) (string, error) {
	budget := fmt.Sprintf(`apiVersion: inference.infergate.dev/v1alpha1
kind: InferenceBudget
metadata:
  name: %s
  namespace: %s
spec:
  per: Caller
  subjects: [{kind: ServiceAccount, name: %s}]
  limits:
    requestsPerMinute: %d
    tokensPerDay: 100000
`, budgetName, workspace, budgetCaller, budgetRPM)
	if err := k(budget, "apply", "-f", "-"); err != nil {
		return "", err
	}
	if err := k("", "create", "serviceaccount", "-n", workspace, budgetCaller); err != nil {
		return "", err
	}
	if err := k("", "create", "rolebinding", "-n", workspace, budgetCaller+"-model-user", "--clusterrole", "infergate-model-user",
		"--serviceaccount", workspace+":"+budgetCaller); err != nil {
		return "", err
	}
	if err := k("", "wait", "-n", workspace, "--for=condition=Ready", "inferencebudget/"+budgetName, "--timeout=60s"); err != nil {
		return "", err
	}
	return kOut("create", "token", "-n", workspace, budgetCaller, "--duration", "24h")
}

// showBudget sends chat requests as budgetCaller until its budget refuses one, and prints what
// each got: the refusal's status, headers and body.
func showBudget(ctx context.Context, w io.Writer, token string) error {
	url := "http://" + *gatewayAddr + "/apis/inference-gateway/v2/workspaces/" + workspace + "/openai/-/v1/chat/completions"
	body := `{"model":"` + entity + `","messages":[{"role":"user","content":"Hello!"}]}`
	fmt.Fprintf(w, "InferenceBudget %s/%s (kubectl get ibud) lets ServiceAccount %s send %d requests a minute. Sending until it refuses:\n\n",
		workspace, budgetName, budgetCaller, budgetRPM)
	for i := 1; i <= 2*budgetRPM+1; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("budget demo: %w", err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		fmt.Fprintf(w, "  request %d: %s  x-ratelimit-remaining-requests: %s\n", i, resp.Status, h.Get("X-Ratelimit-Remaining-Requests"))
		if resp.StatusCode == http.StatusTooManyRequests {
			fmt.Fprintf(w, "    Retry-After: %s  x-ratelimit-reset-requests: %s\n    %s\n\n", h.Get("Retry-After"), h.Get("X-Ratelimit-Reset-Requests"), data)
			return nil
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("budget demo: request %d got %s: %s", i, resp.Status, data)
		}
	}
	return fmt.Errorf("budget demo: InferenceBudget %s/%s refused none of %d requests", workspace, budgetName, 2*budgetRPM+1)
}

// process is a child process whose output goes to a log file.
type process struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
}

func start(logPath string, env []string, name string, args ...string) (*process, error) {
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	// The children die with this process even when it is killed without a chance to clean up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	p := &process{cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop asks the process to finish (SIGTERM) and kills it after 15 seconds.
func (p *process) stop(name string) {
	step("stopping the %s", name)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.log.Close()
}

// waitFor polls check until it passes, the process exits, ctx ends or the timeout expires.
func waitFor(ctx context.Context, timeout time.Duration, p *process, check func() error) error {
	deadline := time.After(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return errors.New("the process exited")
		case <-deadline:
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// free reports an error when addr is already taken, before anything is started.
func free(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is not available (%v); pick other addresses with the flags (go run ./hack/quickstart -h)", addr, err)
	}
	return l.Close()
}

func randomKey() (string, error) {
	b := make([]byte, 16)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		return "", err
	}
	return "sk-quickstart-" + hex.EncodeToString(b), nil
}

// reapOrphans kills the kube-apiserver and etcd of an earlier quickstart that was killed
// without a chance to stop them (SIGKILL): envtest starts them in process groups of their own
// and they outlive their parent. They are recognised by their data directory, under a
// quickstart directory, and by a parent that is no longer a quickstart. A temporary directory
// such a quickstart made is removed too.
func reapOrphans() {
	procs, err := procfs.AllProcs()
	if err != nil {
		return
	}
	leftovers := map[string]bool{}
	marker := string(filepath.Separator) + controlPlaneDir + string(filepath.Separator)
	for _, p := range procs {
		args, err := p.CmdLine()
		if err != nil || len(args) == 0 || (filepath.Base(args[0]) != "etcd" && filepath.Base(args[0]) != "kube-apiserver") {
			continue
		}
		i := slices.IndexFunc(args, func(a string) bool {
			return strings.Contains(a, marker) && (strings.HasPrefix(a, "--data-dir=") || strings.HasPrefix(a, "--cert-dir="))
		})
		if i < 0 {
			continue
		}
		if stat, err := p.Stat(); err == nil {
			if parent, err := procfs.NewProc(stat.PPID); err == nil {
				if pargs, _ := parent.CmdLine(); len(pargs) > 0 && filepath.Base(pargs[0]) == "quickstart" {
					continue // a quickstart that is running
				}
			}
		}
		step("stopping %s (pid %d), left running by an earlier quickstart", filepath.Base(args[0]), p.PID)
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
		_, path, _ := strings.Cut(args[i], "=")
		leftovers[path[:strings.Index(path, marker)]] = true
	}
	for dir := range leftovers {
		if filepath.Dir(dir) == filepath.Clean(os.TempDir()) && strings.HasPrefix(filepath.Base(dir), "infergate-quickstart-") {
			_ = os.RemoveAll(dir)
		}
	}
}
