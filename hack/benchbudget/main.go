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

// Command benchbudget measures InferenceBudget enforcement as the issue asks: three gateway
// replicas (the real internal/gateway and internal/quota packages, each with a Redis client
// of its own) in front of a pool of simulated model servers, 200 clients of one workspace
// (half of them streaming, through the OpenAI Go SDK), and a tokensPerMinute budget that the
// clients' demand exceeds about twice. Everything runs in this process except redis-server,
// which it starts, kills and restarts itself.
//
// Phases (-phases):
//
//   - accuracy: the budget on the shared Redis store, for -windows one-minute windows (aligned
//     to the clock's minutes, as the store's are): the tokens each window admitted, from the
//     store's own counter read after the window's requests settled, and from the usage the
//     clients received, against the limit (targets: ≤ 1.01 × and ≥ 0.97 × in every window);
//   - fallback: the same budget with no store, each replica enforcing limit / 3 alone, with the
//     clients spread unevenly over the replicas (-fallback-spread), for comparison;
//   - latency: non-streaming requests at a fixed rate (-latency-rate), each one to a workspace
//     with a budget (on Redis, never refusing) or to one without, interleaved in the same run:
//     the latency the budget adds (targets: p50 ≤ 300 µs, p99 ≤ 2 ms) and the store's own call
//     times from infergate_budget_store_duration_seconds;
//   - outage: redis-server killed for -outage under the same load, once with the budget failing
//     closed and once failing open: the status codes the clients saw before, during and after,
//     and the tokens admitted per window and per replica.
//
// The report, in Markdown on standard output, ends with every target and whether it was met.
//
//	go run ./hack/benchbudget                 (make bench-budget; about 40 minutes)
//	go run ./hack/benchbudget -short          (about 9 minutes)
//	go run ./hack/benchbudget -windows 10     (about 22 minutes)
package main

import (
	"context"
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/infergate/infergate/hack/internal/redisproc"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
)

const (
	served    = "sim/model"
	workspace = "bench" // the budgeted workspace
	free      = "free"  // the same entity without a budget
	entity    = "chat"
	replicas  = 3
)

var (
	short          = flag.Bool("short", false, "a quick run: 2 windows, 1 fallback window, 15 s of warm-up and latency, a 20 s outage (flags given explicitly win)")
	phases         = flag.String("phases", "accuracy,fallback,latency,outage", "phases to run")
	windows        = flag.Int("windows", 30, "complete one-minute windows of the accuracy phase")
	fallbackWins   = flag.Int("fallback-windows", 3, "complete one-minute windows of the fallback phase")
	clients        = flag.Int("clients", 200, "concurrent clients, half of them streaming")
	think          = flag.Duration("think", 2*time.Second, "mean pause of a client between the end of a request and the next (exponential), refused or not")
	limitFlag      = flag.Int64("limit", 0, "tokensPerMinute of the budget (0: the demand measured in the warm-up divided by -demand-ratio)")
	demandRatio    = flag.Float64("demand-ratio", 2, "demand over the limit, when -limit is 0")
	warmup         = flag.Duration("warmup", 30*time.Second, "unbudgeted warm-up that measures the clients' demand")
	servers        = flag.Int("servers", 4, "simulated model servers in the pool")
	chunkDelay     = flag.Duration("chunk-delay", 5*time.Millisecond, "the simulators' time per output token")
	settleWait     = flag.Duration("settle", 5*time.Second, "wait after a window ends before reading its counter (its last streams settle meanwhile)")
	spreadFlag     = flag.String("spread", "34,33,33", "share of the clients (percent) on each replica, accuracy and outage phases")
	fallbackSpread = flag.String("fallback-spread", "60,30,10", "share of the clients (percent) on each replica in the fallback phase")
	latencyDur     = flag.Duration("latency-duration", 30*time.Second, "length of the latency phase")
	latencyRate    = flag.Float64("latency-rate", 300, "requests per second of the latency phase, both sides together")
	outage         = flag.Duration("outage", 60*time.Second, "how long redis-server stays down")
	killAt         = flag.Duration("kill-at", 20*time.Second, "offset into a window at which redis-server is killed")
	appendOnly     = flag.Bool("appendonly", false, "run redis-server with its append-only file, as the chart does, so that it comes back with its counters")
	redisBin       = flag.String("redis-server", "", "redis-server binary (default: $REDIS_SERVER, else redis-server on PATH)")
	flushFlag      = flag.Bool("flush-complete", false, "experiment: send each gateway response with a Content-Length as soon as it is written, before the gateway settles its budget (see flush.go)")
	recordsFile    = flag.String("records", "", "write every request the clients sent, as CSV, to this file")
	cpuProfile     = flag.String("cpuprofile", "", "write a CPU profile of the whole process during the latency phase to this file")
	seed           = flag.Uint64("seed", 1, "seed of prompts, lengths and pauses")
)

func main() {
	flag.Parse()
	if *short {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"windows": "2", "fallback-windows": "1", "warmup": "15s", "latency-duration": "15s", "outage": "20s", "kill-at": "15s"} {
			if !set[name] {
				_ = flag.Set(name, v)
			}
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchbudget:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run() error {
	spread, err := percents(*spreadFlag)
	if err != nil {
		return fmt.Errorf("-spread: %w", err)
	}
	fbSpread, err := percents(*fallbackSpread)
	if err != nil {
		return fmt.Errorf("-fallback-spread: %w", err)
	}
	want := map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "accuracy", "fallback", "latency", "outage":
			want[p] = true
		default:
			return fmt.Errorf("-phases: unknown phase %q", p)
		}
	}

	// The outage phase kills it and starts it again on its port: empty, as after a crash, or,
	// with -appendonly, with what its append-only file kept.
	rs, err := redisproc.New(*redisBin, "benchbudget")
	if err != nil {
		return err
	}
	rs.AppendOnly = *appendOnly
	defer rs.Stop()
	if err := rs.Start(); err != nil {
		return err
	}
	sims, stopSims, err := startSimulators(*servers)
	defer stopSims()
	if err != nil {
		return err
	}
	rep := &report{started: time.Now(), spread: spread, fallbackSpread: fbSpread}
	dump, closeDump, err := recordsWriter(*recordsFile)
	if err != nil {
		return err
	}
	defer closeDump()

	// Warm-up, without budgets: the clients' demand, from which the limit follows.
	limit := *limitFlag
	if limit == 0 || want["accuracy"] || want["fallback"] || want["outage"] {
		reps, stop, err := startReplicas(spec(sims), rs.Addr)
		if err != nil {
			return err
		}
		logf("warm-up without budgets for %v", *warmup)
		recs := drive(reps, free, spread, time.Now().Add(*warmup), 0)
		stop()
		dump("warmup", recs)
		rep.warmup = summarize(recs, *warmup)
		if limit == 0 {
			limit = int64(rep.warmup.tokensPerMinute / *demandRatio)
			limit -= limit % 1000
		}
	}
	rep.limit = limit
	logf("limit %d tokens per minute", limit)

	if want["accuracy"] {
		b := budget("accuracy", limit, false)
		reps, stop, err := startReplicas(spec(sims, b), rs.Addr)
		if err != nil {
			return err
		}
		rep.accuracy, err = windowed(reps, b, spread, *windows, rs.Addr, 1)
		stop()
		if err != nil {
			return err
		}
		dump("accuracy", rep.accuracy.records)
	}
	if want["fallback"] {
		b := budget("fallback", limit, false)
		reps, stop, err := startReplicas(spec(sims, b), "")
		if err != nil {
			return err
		}
		rep.fallback, err = windowed(reps, b, fbSpread, *fallbackWins, "", 2)
		stop()
		if err != nil {
			return err
		}
		dump("fallback", rep.fallback.records)
	}
	if want["latency"] {
		rep.latency, err = latencyPhase(sims, rs.Addr)
		if err != nil {
			return err
		}
	}
	if want["outage"] {
		for _, open := range []bool{false, true} {
			o, err := outagePhase(sims, rs, limit, open, spread)
			if err != nil {
				return err
			}
			rep.outages = append(rep.outages, o)
			dump("outage-"+o.budgetName(), o.records)
		}
	}
	rep.finished = time.Now()
	rep.write(os.Stdout)
	return nil
}

// budget is a tokensPerMinute budget of the bench workspace that counts input and output
// tokens.
func budget(name string, limit int64, failOpen bool) *quota.Budget {
	return &quota.Budget{Workspace: workspace, Name: name, ID: workspace + "/" + name, Input: true, Output: true, Zone: time.UTC,
		Limits:   []quota.Limit{{Name: "tokensPerMinute", Window: quota.Minute, Max: limit, Tokens: true}},
		FailOpen: failOpen, Specificity: 8}
}

// counterKey is the store's key of b's counter for the window that starts at start.
func counterKey(b *quota.Budget, start time.Time) string {
	return quota.Key(quota.CounterKey(b, &b.Limits[0], workspace, ""), start)
}

// spec is a routing table with entity chat in the bench workspace (under budgets) and in the
// free workspace, each balancing over every simulator.
func spec(sims []string, budgets ...*quota.Budget) routing.Spec {
	s := routing.Spec{Budgets: budgets}
	for _, ws := range []string{workspace, free} {
		e := routing.EntitySpec{Workspace: ws, Name: entity, Created: time.Now()}
		for i, u := range sims {
			name := "sim-" + strconv.Itoa(i)
			s.Providers = append(s.Providers, routing.ProviderSpec{Workspace: ws, Name: name, BaseURL: u, Ready: true})
			e.Backends = append(e.Backends, routing.BackendSpec{Workspace: ws, Name: name, ServedModel: served, Weight: 1})
		}
		s.Entities = append(s.Entities, e)
	}
	return s
}

// startSimulators serves n simulators on loopback ports, in this process.
func startSimulators(n int) ([]string, func(), error) {
	var srvs []*http.Server
	stop := func() {
		for _, s := range srvs {
			_ = s.Close()
		}
	}
	var urls []string
	for i := range n {
		sim := simulator.New(simulator.Options{Name: "sim-" + strconv.Itoa(i), Models: []string{served}, Chunks: 256, ChunkDelay: *chunkDelay})
		url, srv, err := serve(sim)
		if err != nil {
			return nil, stop, err
		}
		srvs = append(srvs, srv)
		urls = append(urls, url)
	}
	return urls, stop, nil
}

func serve(h http.Handler) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv, nil
}

// replica is one gateway replica: its own routing store, limiter, Redis client and metrics,
// as a manager pod has.
type replica struct {
	url     string
	reg     *prometheus.Registry
	limiter *quota.Limiter
}

// base is the replica's OpenAI route of workspace ws.
func (r *replica) base(ws string) string {
	return r.url + gateway.Prefix + ws + "/openai/-/v1/"
}

// startReplicas serves three gateway replicas of table s, their budgets on the Redis server at
// addr, or each in process (limit / replicas) when addr is "".
func startReplicas(s routing.Spec, addr string) ([]*replica, func(), error) {
	var closers []func()
	stop := func() {
		for _, c := range closers {
			c()
		}
	}
	var reps []*replica
	for range replicas {
		table, errs := routing.New(s, nil)
		if len(errs) > 0 {
			return nil, stop, errors.Join(errs...)
		}
		store := routing.NewStore()
		store.Swap(table)
		reg := prometheus.NewRegistry()
		lo := quota.LimiterOptions{Replicas: replicas, Registerer: reg}
		if addr != "" {
			// As the manager's newLimiter does: no retries on the hot path, and the store's
			// timeout on every call.
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: quota.DefaultTimeout,
				ReadTimeout: quota.DefaultTimeout, WriteTimeout: quota.DefaultTimeout, ContextTimeoutEnabled: true})
			closers = append(closers, func() { _ = c.Close() })
			lo.Store = &quota.Redis{Client: c}
		}
		l, err := quota.NewLimiter(lo)
		if err != nil {
			return nil, stop, err
		}
		g, err := gateway.New(gateway.Options{Store: store, Limiter: l, AllowLocalUpstreams: true, Registerer: reg, Gatherer: reg})
		if err != nil {
			return nil, stop, err
		}
		var h http.Handler = g
		if *flushFlag {
			h = flushComplete(g)
		}
		url, srv, err := serve(h)
		if err != nil {
			return nil, stop, err
		}
		closers = append(closers, func() { _ = srv.Close(); g.CloseIdleConnections() })
		reps = append(reps, &replica{url: url, reg: reg, limiter: l})
	}
	return reps, stop, nil
}

// windowed runs the clients against budget b for n complete windows after the one they start
// in, and reads each window's counter from Redis (when addr is set) once its requests have
// settled.
func windowed(reps []*replica, b *quota.Budget, spread []int, n int, addr string, salt uint64) (*windowPhase, error) {
	start := time.Now()
	first := start.Truncate(time.Minute).Add(time.Minute)
	end := first.Add(time.Duration(n) * time.Minute)
	logf("%s: %d windows from %s to %s, load from now", b.ID, n, first.Format("15:04"), end.Format("15:04"))
	counters := map[time.Time]int64{}
	readErr := make(chan error, 1)
	if addr != "" {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		go func() {
			defer close(readErr)
			for w := start.Truncate(time.Minute); w.Before(end); w = w.Add(time.Minute) {
				time.Sleep(time.Until(w.Add(time.Minute + *settleWait)))
				v, err := c.Get(context.Background(), counterKey(b, w)).Int64()
				if err != nil {
					readErr <- fmt.Errorf("read the counter of window %s: %w", w.Format("15:04"), err)
					return
				}
				counters[w] = v
				logf("%s: window %s: %d tokens (%.4f of the limit)", b.ID, w.Format("15:04"), v, float64(v)/float64(b.Limits[0].Max))
			}
		}()
	} else {
		close(readErr)
	}
	recs := drive(reps, workspace, spread, end, salt)
	if err := <-readErr; err != nil {
		return nil, err
	}
	return &windowPhase{budget: b, start: start, first: first, windows: n, records: recs, counters: counters, store: addr != ""}, nil
}

func percents(s string) ([]int, error) {
	var out []int
	total := 0
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q is not a share in percent", f)
		}
		out = append(out, n)
		total += n
	}
	if len(out) != replicas || total != 100 {
		return nil, fmt.Errorf("want %d shares that add up to 100", replicas)
	}
	return out, nil
}

// recordsWriter returns a function that writes a phase's records to file as CSV, and its
// close; both do nothing when file is "".
func recordsWriter(file string) (func(string, []record), func(), error) {
	if file == "" {
		return func(string, []record) {}, func() {}, nil
	}
	f, err := os.Create(file)
	if err != nil {
		return nil, nil, err
	}
	w := csv.NewWriter(f)
	_ = w.Write([]string{"phase", "start_unix_ms", "duration_ms", "replica", "stream", "status", "code", "prompt_tokens", "completion_tokens", "limit_tokens", "clamped", "error"})
	dump := func(phase string, recs []record) {
		for _, r := range recs {
			_ = w.Write([]string{phase, strconv.FormatInt(r.start.UnixMilli(), 10), strconv.FormatFloat(r.dur.Seconds()*1000, 'f', 3, 64),
				strconv.Itoa(r.replica + 1), strconv.FormatBool(r.stream), strconv.Itoa(r.status), r.code,
				strconv.FormatInt(r.prompt, 10), strconv.FormatInt(r.completion, 10), strconv.FormatInt(r.limit, 10), strconv.FormatBool(r.clamped), r.err})
		}
		w.Flush()
	}
	return dump, func() { w.Flush(); f.Close() }, nil
}

// profile starts a CPU profile to *cpuProfile, when set, and returns its stop.
func profile() (func(), error) {
	if *cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(*cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
