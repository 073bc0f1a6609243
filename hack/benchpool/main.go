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

// Command benchpool measures what provider choice does for the users of model servers: time to
// first token (TTFT), end-to-end latency, output tokens per second and prefix cache hits,
// against a pool of simulated vLLM servers of unequal capacity under open-loop Poisson
// arrivals of streaming chat requests.
//
// There are three workloads (-workloads):
//
//   - independent: prompts of 2,000 to 6,000 bytes sharing nothing;
//   - prefix: conversations (-conversations in progress at once, -turns turns each), each
//     with a system prompt of its own, every turn sent after the previous one's answer with
//     the whole conversation so far;
//   - shared: applications (-apps) with a system prompt of 7,200 bytes each (about 1,200
//     words), every request an application's system prompt and a new question of 150 to 250
//     bytes, sent at its arrival.
//
// Each phase (a workload at a share of the pool's capacity, -loads) runs every configuration at
// once, each with a pool of its own and the very same arrivals: infergate's gateway with each
// balancing policy, the default one with two gateway replicas splitting the traffic, and, for
// conversations and applications, an oracle client that sends each conversation or
// application to one server directly (the reference the issue measured): conversation id
// modulo the servers, applications in proportion to the servers' max-num-seqs. The report, in
// Markdown on standard output, ends with the targets checked against RoundRobin and
// the oracle in the same phase.
//
// The fallback phase (-workloads fallback, fallback.go) drives independent prompts at
// -overload of the pool's capacity at a virtual model whose first target is the pool and
// whose second a hosted API (a pool of -hosted servers), against the pool alone at the same
// load and at half of it, and checks the targets: no client-visible error, and a
// TTFT p99 within 1.5 times the unsaturated one.
//
//	go run ./hack/benchpool            (make bench-pool; about 11 minutes)
//	go run ./hack/benchpool -workloads shared -loads 0.8 -duration 20s -warmup 5s
//	go run ./hack/benchpool -workloads fallback    (about a minute)
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
)

const served = "meta/llama-3.1-8b-instruct"

var (
	duration  = flag.Duration("duration", 40*time.Second, "arrivals per phase")
	warmup    = flag.Duration("warmup", 10*time.Second, "leading part of each phase left out of the figures")
	loads     = flag.String("loads", "0.5,0.8,0.95", "offered load, as shares of the pool's capacity")
	workloads = flag.String("workloads", "independent,prefix,shared,fallback", "workloads to run: independent, prefix, shared; fallback, the phase of a virtual model falling back to a hosted API (fallback.go)")
	pool      = flag.String("pool", "8,8,3", "max-num-seqs of each simulated server")
	weightsOf = flag.String("weights", "", "weights of the servers' providers in the gateway's entity (default: 1 each, the pool's capacities unknown to it)")
	slots     = flag.Int("conversations", 48, "conversations in progress at once (prefix workload)")
	turns     = flag.Int("turns", 10, "turns per conversation (prefix workload)")
	apps      = flag.Int("apps", 64, "applications, each with a system prompt of its own (shared workload); 64 make about twice what one server's prefix cache holds")
	interval  = flag.Duration("scrape-interval", routing.DefaultMetricsInterval, "interval of the gateway's reads of the servers' metrics")
	seed      = flag.Uint64("seed", 1, "seed of arrivals and prompts")
	simBinary = flag.String("simulator", "", "simulator binary (default: built from ./cmd/simulator)")
)

// The simulated servers: an 8B model on one GPU each, more or less.
const (
	stepTime        = 10 * time.Millisecond // decode step with one sequence
	stepTimePerSeq  = time.Millisecond      // added per other running sequence
	prefillPerToken = 50 * time.Microsecond
	kvCacheBlocks   = 4096 // of 16 tokens: 65,536, an 8B model's KV cache on a 24 to 40 GB GPU
)

type config struct {
	name      string
	balancing routing.Balancing
	replicas  int
	direct    bool   // no gateway: each conversation or application to one server
	model     string // the model the clients name, when not bench/llama (the fallback phase)
}

var configs = []config{
	{name: "CacheAware (default)", balancing: routing.CacheAware, replicas: 1},
	{name: "CacheAware, 2 replicas", balancing: routing.CacheAware, replicas: 2},
	{name: "LeastRequest", balancing: routing.LeastRequest, replicas: 1},
	{name: "RoundRobin", balancing: routing.RoundRobin, replicas: 1},
	{name: "Failover (first provider, as NeMo)", balancing: routing.Failover, replicas: 1},
	{name: "oracle: each conversation or application on one server, direct", direct: true},
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchpool:", err)
		os.Exit(1)
	}
}

func run() error {
	seqs, err := ints(*pool)
	if err != nil {
		return fmt.Errorf("-pool: %w", err)
	}
	shares, err := floats(*loads)
	if err != nil {
		return fmt.Errorf("-loads: %w", err)
	}
	hosted, err := ints(*hostedPool)
	if err != nil {
		return fmt.Errorf("-hosted: %w", err)
	}
	if *simBinary == "" {
		dir, err := os.MkdirTemp("", "benchpool")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*simBinary = filepath.Join(dir, "simulator")
		fmt.Fprintln(os.Stderr, "building the simulator")
		if out, err := exec.Command("go", "build", "-o", *simBinary, "./cmd/simulator").CombinedOutput(); err != nil {
			return fmt.Errorf("build the simulator: %v\n%s", err, out)
		}
	}
	weights := make([]int, len(seqs))
	for i := range weights {
		weights[i] = 1
	}
	if *weightsOf != "" {
		if weights, err = ints(*weightsOf); err != nil || len(weights) != len(seqs) {
			return fmt.Errorf("-weights: want %d positive integers, one per server", len(seqs))
		}
	}
	rep := &report{pool: seqs, weights: weights}
	if *apps < 1 {
		return fmt.Errorf("-apps: want a positive integer")
	}
	build := func(name string, rate float64, d time.Duration) (*workload, error) {
		switch name {
		case "independent":
			return independent(rate, d, *seed), nil
		case "prefix":
			return prefixHeavy(rate, d, *slots, *turns, *seed), nil
		case "shared":
			return shared(rate, d, *apps, *seed), nil
		}
		return nil, fmt.Errorf("unknown workload %q", name)
	}
	for _, name := range strings.Split(*workloads, ",") {
		name = strings.TrimSpace(name)
		if name == "fallback" {
			continue
		}
		if _, err := build(name, 0, 0); err != nil {
			return err
		}
	}
	for _, name := range strings.Split(*workloads, ",") {
		name = strings.TrimSpace(name)
		if name == "fallback" {
			if rep.fallback, err = runFallback(seqs, hosted, weights); err != nil {
				return err
			}
			continue
		}
		for _, share := range shares {
			w, _ := build(name, 0, 0)
			capacity := poolCapacity(seqs, w.meanPromptTokens())
			rate := share * capacity
			w, _ = build(name, rate, *duration)
			fmt.Fprintf(os.Stderr, "%s at %.0f%% of capacity: %.1f requests/s, %d requests\n", w.name, share*100, rate, len(w.arrivals))
			results, err := runPhase(w, seqs, weights)
			if err != nil {
				return err
			}
			rep.add(phase{workload: w, share: share, rate: rate, capacity: capacity, results: results})
		}
	}
	rep.write(os.Stdout)
	return nil
}

// poolCapacity is the requests per second the pool completes with every slot busy and no
// prefix cache hit: each server runs its max-num-seqs sequences, each taking the prefill of
// the mean prompt and outputTokens decode steps at a full batch.
func poolCapacity(seqs []int, promptTokens float64) float64 {
	total := 0.0
	for _, n := range seqs {
		service := time.Duration(promptTokens*float64(prefillPerToken)) + outputTokens*(stepTime+time.Duration(n-1)*stepTimePerSeq)
		total += float64(n) / service.Seconds()
	}
	return total
}

// result is one configuration's outcomes in a phase.
type result struct {
	config   config
	outcomes []outcome
	tokens   int64 // tokens received inside the measured window
	// picks counts the gateways' choices of provider by how they chose (CacheAware).
	picks map[string]float64
}

// runPhase runs every configuration against pools of its own, with the same arrivals.
func runPhase(w *workload, seqs, weights []int) ([]result, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cleanup []func()
	defer func() {
		for _, f := range cleanup {
			f()
		}
	}()
	type setup struct {
		urls []string // one per gateway replica, or one per server when direct
		regs []*prometheus.Registry
	}
	setups := make([]setup, len(configs))
	for i, cfg := range configs {
		if cfg.direct && !w.sticky() {
			continue // with independent prompts there is nothing to stick to
		}
		servers, stop, err := startPool(seqs, "sim")
		cleanup = append(cleanup, stop)
		if err != nil {
			return nil, err
		}
		if cfg.direct {
			for _, s := range servers {
				setups[i].urls = append(setups[i].urls, s+"/v1/chat/completions")
			}
			continue
		}
		for range cfg.replicas {
			url, reg, stop, err := startGateway(ctx, cfg.balancing, servers, weights)
			cleanup = append(cleanup, stop)
			if err != nil {
				return nil, err
			}
			setups[i].regs = append(setups[i].regs, reg)
			setups[i].urls = append(setups[i].urls, url+"/apis/inference-gateway/v2/workspaces/bench/openai/-/v1/chat/completions")
		}
	}
	// Let the scrapers read every server once.
	time.Sleep(2*(*interval) + 200*time.Millisecond)

	start := time.Now().Add(100 * time.Millisecond)
	results := make([]result, len(configs))
	var wg sync.WaitGroup
	for i, cfg := range configs {
		results[i].config = cfg
		if len(setups[i].urls) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].outcomes, results[i].tokens = drive(ctx, w, cfg, setups[i].urls, seqs, start)
			results[i].picks = picks(setups[i].regs)
		}()
	}
	wg.Wait()
	return results, nil
}

// drive sends the workload's arrivals at their times and waits for the answers, for at most
// a minute after the last arrival; Failover's clients give up after 15 s, since its one
// server's queue would take minutes to drain. When direct, urls are the servers', of
// max-num-seqs seqs.
func drive(ctx context.Context, w *workload, cfg config, urls []string, seqs []int, start time.Time) ([]outcome, int64) {
	patience := time.Minute
	if !cfg.direct && cfg.balancing == routing.Failover {
		patience = 15 * time.Second
	}
	ctx, cancel := context.WithDeadline(ctx, start.Add(*duration+patience))
	defer cancel()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}
	var tokens atomic.Int64
	onToken := func() {
		if since := time.Since(start); since >= *warmup && since < *duration {
			tokens.Add(1)
		}
	}
	model := "bench/llama"
	switch {
	case cfg.direct:
		model = served
	case cfg.model != "":
		model = cfg.model
	}
	outcomes := make([]outcome, len(w.arrivals))
	var owner []int // the server of each application, when direct
	if cfg.direct && w.apps > 0 {
		owner = assignApps(w.apps, seqs)
	}
	conversations := make([]slot, w.slots)
	for s := range conversations {
		conversations[s].conv = w.newConversation(s, 0)
	}
	var wg sync.WaitGroup
	for i, a := range w.arrivals {
		time.Sleep(time.Until(start.Add(a.at)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := urls[0]
			if len(urls) > 1 && !cfg.direct {
				url = urls[a.replica]
			}
			if w.apps > 0 {
				if cfg.direct {
					url = urls[owner[a.app]]
				}
				o := stream(ctx, client, url, nil, body(model, []message{{"system", w.systems[a.app]}, {"user", w.prompts[i]}}), onToken)
				o.sent = a.at
				outcomes[i] = o
				return
			}
			if w.slots == 0 {
				o := stream(ctx, client, url, nil, body(model, []message{{"system", "You are a helpful assistant."}, {"user", w.prompts[i]}}), onToken)
				o.sent = a.at
				outcomes[i] = o
				return
			}
			outcomes[i] = conversations[a.slot].turn(ctx, w, a, cfg, client, urls, model, start, onToken)
		}()
	}
	wg.Wait()
	return outcomes, tokens.Load()
}

// slot holds a conversation slot's current conversation in one configuration.
type slot struct {
	mu   sync.Mutex
	conv *conversation
	k    int // conversations this slot has started
}

// turn sends the next turn of the slot's conversation, after the previous one has ended.
func (s *slot) turn(ctx context.Context, w *workload, a arrival, cfg config, client *http.Client, urls []string, model string, start time.Time, onToken func()) outcome {
	deferred := !s.mu.TryLock()
	if deferred {
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	c := s.conv
	user := message{"user", w.userTurn(c.id, c.turn)}
	messages := append(c.messages[:len(c.messages):len(c.messages)], user)
	url := urls[0]
	if cfg.direct {
		url = urls[c.id%len(urls)]
	} else if len(urls) > 1 {
		url = urls[a.replica]
	}
	sent := time.Since(start)
	o := stream(ctx, client, url, nil, body(model, messages), onToken)
	o.sent, o.deferred = sent, deferred
	if o.err != nil {
		return o
	}
	c.messages = append(messages, message{"assistant", o.reply})
	if c.turn++; c.turn >= w.turns {
		s.k++
		s.conv = w.newConversation(a.slot, s.k)
	}
	return o
}

// startPool starts one simulator process per entry of seqs, named name (which begins every
// answer), and returns their base URLs.
func startPool(seqs []int, name string) ([]string, func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
	var urls []string
	for _, n := range seqs {
		cmd := exec.Command(*simBinary, "--listen", "127.0.0.1:0", "--name", name, "--models", served,
			"--chunks", strconv.Itoa(outputTokens), "--chunk-delay", stepTime.String(), "--decode-time-per-seq", stepTimePerSeq.String(),
			"--prefill-time-per-token", prefillPerToken.String(), "--kv-cache-blocks", strconv.Itoa(kvCacheBlocks),
			"--max-num-seqs", strconv.Itoa(n))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, stop, err
		}
		if err := cmd.Start(); err != nil {
			return nil, stop, err
		}
		cmds = append(cmds, cmd)
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return nil, stop, fmt.Errorf("simulator: %w", err)
		}
		_, url, ok := strings.Cut(strings.TrimSpace(line), " on ")
		if !ok {
			return nil, stop, fmt.Errorf("simulator said %q", line)
		}
		urls = append(urls, url)
	}
	return urls, stop, nil
}

// startGateway serves the gateway package with a table that routes bench/llama to the
// servers, and, for CacheAware, reads their metrics as the manager does.
func startGateway(ctx context.Context, b routing.Balancing, servers []string, weights []int) (string, *prometheus.Registry, func(), error) {
	spec := routing.Spec{Entities: []routing.EntitySpec{{Workspace: "bench", Name: "llama", Created: time.Now(), Balancing: b}}}
	for i, u := range servers {
		name := "sim-" + string(rune('a'+i))
		ps := routing.ProviderSpec{Workspace: "bench", Name: name, BaseURL: u, Ready: true}
		if b == routing.CacheAware {
			ps.Metrics = &routing.MetricsSpec{URL: u + "/metrics", Interval: *interval}
		}
		spec.Providers = append(spec.Providers, ps)
		spec.Entities[0].Backends = append(spec.Entities[0].Backends, routing.BackendSpec{Workspace: "bench", Name: name, ServedModel: served, Weight: weights[i]})
	}
	gw, err := serve(ctx, spec, b == routing.CacheAware)
	if err != nil {
		return "", nil, gw.stop, err
	}
	return gw.url, gw.reg, gw.stop, nil
}

// gatewayServer is one gateway serving a table: its base URL, metrics and routing store.
type gatewayServer struct {
	url   string
	reg   *prometheus.Registry
	store *routing.Store
	stop  func()
}

// serve serves the gateway package with the table of spec on a loopback port, and, with
// metrics, reads the providers' metrics as the manager does.
func serve(ctx context.Context, spec routing.Spec, metrics bool) (gatewayServer, error) {
	gw := gatewayServer{stop: func() {}}
	table, errs := routing.New(spec, nil)
	if len(errs) > 0 {
		return gw, errors.Join(errs...)
	}
	gw.store = routing.NewStore()
	gw.store.Swap(table)
	gw.reg = prometheus.NewRegistry()
	g, err := gateway.New(gateway.Options{Store: gw.store, AllowLocalUpstreams: true, Registerer: gw.reg})
	if err != nil {
		return gw, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return gw, err
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	sctx, cancel := context.WithCancel(ctx)
	if metrics {
		go func() { _ = (&scrape.Scraper{Store: gw.store, Client: scrape.NewClient(true)}).Start(sctx) }()
	}
	gw.url = "http://" + ln.Addr().String()
	gw.stop = func() { cancel(); _ = srv.Close() }
	return gw, nil
}

// picks sums the gateways' infergate_gateway_provider_picks_total by choice.
func picks(regs []*prometheus.Registry) map[string]float64 {
	out := map[string]float64{}
	for _, reg := range regs {
		families, err := reg.Gather()
		if err != nil {
			continue
		}
		for _, mf := range families {
			if mf.GetName() != "infergate_gateway_provider_picks_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "choice" {
						out[l.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}
