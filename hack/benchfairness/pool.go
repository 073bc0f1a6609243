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
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/infergate/infergate/hack/internal/redisproc"
	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
)

// children are the processes this one started and has not stopped: killed when it is
// interrupted (killChildren), so that none outlives it.
var children struct {
	sync.Mutex
	procs map[*os.Process]bool
}

func adopt(p *os.Process) {
	children.Lock()
	defer children.Unlock()
	if children.procs == nil {
		children.procs = map[*os.Process]bool{}
	}
	children.procs[p] = true
}

func release(p *os.Process) {
	children.Lock()
	defer children.Unlock()
	delete(children.procs, p)
}

func killChildren() {
	children.Lock()
	defer children.Unlock()
	for p := range children.procs {
		_ = p.Kill()
	}
}

// startPool starts one simulator process per entry of seqs, with the bench's model of a GPU
// server (fast: every token at once, for the overhead phase), and returns their base URLs.
func startPool(seqs []int, fast bool) ([]string, func(), error) {
	var cmds []*exec.Cmd
	stop := func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
			release(c.Process)
		}
	}
	var urls []string
	for i, n := range seqs {
		args := []string{"--listen", "127.0.0.1:0", "--name", "sim-" + strconv.Itoa(i), "--models", served, "--max-num-seqs", strconv.Itoa(n)}
		if fast {
			args = append(args, "--chunks", "1")
		} else {
			// Requests ask for fewer tokens with max_tokens (prompts.body).
			args = append(args, "--chunks", strconv.Itoa(2**chunks), "--chunk-delay", chunkDelay.String(),
				"--decode-time-per-seq", perSeq.String(), "--prefill-time-per-token", prefill.String(),
				"--kv-cache-blocks", strconv.Itoa(*kvBlocks))
		}
		cmd := exec.Command(*simBinary, args...)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, stop, err
		}
		if err := cmd.Start(); err != nil {
			return nil, stop, err
		}
		adopt(cmd.Process)
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

// warmupWorkspace is where the burst that teaches the gateways the servers' capacity comes
// from (teach).
const warmupWorkspace = "warmup"

// spec is the routing table of the bench: the servers as providers of the system workspace
// (with their metrics scraped when metrics is set) and, in each of the ten workspaces and the
// warm-up one, a ModelEntity llama over all of them. Every entity resolves to the same providers: one pool,
// one queue, over which the gateway shares capacity between workspaces.
func spec(servers []string, metrics bool) routing.Spec {
	var s routing.Spec
	var backends []routing.BackendSpec
	for i, u := range servers {
		name := "sim-" + string(rune('a'+i))
		ps := routing.ProviderSpec{Workspace: "system", Name: name, BaseURL: u, Ready: true}
		if metrics {
			ps.Metrics = &routing.MetricsSpec{URL: u + "/metrics", Interval: *interval}
		}
		s.Providers = append(s.Providers, ps)
		backends = append(backends, routing.BackendSpec{Workspace: "system", Name: name, ServedModel: served})
	}
	for w := range workspaces + 1 {
		ws := wsName(w)
		if w == workspaces {
			ws = warmupWorkspace
		}
		es := routing.EntitySpec{Workspace: ws, Name: entityName, Created: time.Now(), Backends: backends}
		if *queueTime > 0 {
			d := *queueTime
			es.Queue.MaxTime = &d
		}
		s.Entities = append(s.Entities, es)
	}
	return s
}

// replica is one gateway replica: its own routing store, scraper, pools and metrics, as a
// manager pod has.
type replica struct {
	url   string
	reg   *prometheus.Registry
	store *routing.Store
	pools *flow.Pools
}

// route is the replica's chat completions route of workspace ws.
func (r *replica) route(ws string) string {
	return r.url + gateway.Prefix + ws + "/openai/-/v1/chat/completions"
}

// startReplicas serves n gateway replicas of s. With redisAddr, their pools exchange the
// fair-share counters through it; else each keeps its own.
func startReplicas(ctx context.Context, s routing.Spec, n int, redisAddr string) ([]*replica, func(), error) {
	ctx, cancel := context.WithCancel(ctx)
	closers := []func(){cancel}
	stop := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	var reps []*replica
	for range n {
		table, errs := routing.New(s, nil)
		if len(errs) > 0 {
			return nil, stop, errors.Join(errs...)
		}
		store := routing.NewStore()
		store.Swap(table)
		reg := prometheus.NewRegistry()
		po := flow.PoolsOptions{Interval: *exchange, Registerer: reg}
		if redisAddr != "" {
			c := redis.NewClient(&redis.Options{Addr: redisAddr, MaxRetries: -1, DialTimeout: time.Second,
				ReadTimeout: time.Second, WriteTimeout: time.Second, ContextTimeoutEnabled: true})
			closers = append(closers, func() { _ = c.Close() })
			po.Exchanger = &flow.Redis{Client: c}
		}
		pools, err := flow.NewPools(po)
		if err != nil {
			return nil, stop, err
		}
		go func() { _ = pools.Start(ctx) }()
		g, err := gateway.New(gateway.Options{Store: store, AllowLocalUpstreams: true, Registerer: reg, Pools: pools})
		if err != nil {
			return nil, stop, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, stop, err
		}
		srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		closers = append(closers, func() { _ = srv.Close(); g.CloseIdleConnections() })
		go func() { _ = (&scrape.Scraper{Store: store, Client: scrape.NewClient(true)}).Start(ctx) }()
		reps = append(reps, &replica{url: "http://" + ln.Addr().String(), reg: reg, store: store, pools: pools})
	}
	return reps, stop, nil
}

// teach saturates the pool from the warm-up workspace through every replica until each has
// learned the servers' capacity from their metrics (requests waiting while others run), then
// ends those requests and waits until the servers are idle. The workspaces measured then start
// even: none has been served before.
func teach(ctx context.Context, servers []string, reps []*replica, capacity int) {
	l := newLoad(time.Now(), 0, 0, 9)
	tctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range 3 * capacity {
		url := reps[i%len(reps)].route(warmupWorkspace)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tctx.Err() == nil {
				if o := stream(tctx, l.client, url, nil, l.prompts.body(entityName, true), nil); o.err != nil {
					sleep(tctx, 50*time.Millisecond)
				}
			}
		}()
	}
	learned := func() bool {
		for _, c := range capacities(reps) {
			if c == 0 {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !learned() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if !learned() {
		logf("warning: the gateways did not learn the servers' capacity: %v", capacities(reps))
	}
	client := scrape.NewClient(true)
	for deadline = time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		busy := 0.0
		for _, u := range servers {
			if r, _, err := scrape.Fetch(ctx, client, scrape.Target{URL: u + "/metrics"}); err == nil {
				busy += r.Running + r.Waiting
			} else {
				busy++
			}
		}
		if busy == 0 {
			break
		}
	}
	// The next reports show the servers idle.
	time.Sleep(2 * *interval)
}

// capacities returns what each replica's gateway knows of the pool: the capacity it learned
// (summed over the providers, 0 when some provider's is unknown) and whether every report is
// fresh.
func capacities(reps []*replica) []int {
	out := make([]int, len(reps))
	now := time.Now()
	for i, r := range reps {
		known := true
		r.store.Load().EachProvider(func(p *routing.Provider) {
			s := p.Health.Signals(now, p.StaleAfter())
			if !s.Reported || s.Capacity == 0 {
				known = false
			}
			out[i] += int(s.Capacity)
		})
		if !known {
			out[i] = 0
		}
	}
	return out
}

// monitor samples, while a run lasts, the servers' own queues (read from their metrics every
// 100 ms) and, every 5 ms, what the gateway replicas see of them: whether each knows the
// pool's capacity (its room is unbounded, and everything waiting goes, when some provider's
// report is stale or without a capacity), how often that knowledge lapsed, and the age of the
// oldest report it held.
type monitor struct {
	mu               sync.Mutex
	samples          int
	waiting, running float64 // sums over samples, over the servers
	maxWaiting       float64
	views, unknown   int // replica views sampled, those without a known capacity
	lapses           int // times a replica went from knowing the capacity to not
	maxAge           time.Duration
	q0, q1           *queueStats // the replicas' queue metrics when the window opens and closes
	stop             context.CancelFunc
	done             sync.WaitGroup
}

func startMonitor(ctx context.Context, servers []string, reps []*replica, from, to time.Time) *monitor {
	ctx, cancel := context.WithCancel(ctx)
	m := &monitor{stop: cancel}
	client := scrape.NewClient(true)
	every := func(d time.Duration, f func()) {
		m.done.Add(1)
		go func() {
			defer m.done.Done()
			t := time.NewTicker(d)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if now := time.Now(); !now.Before(from) && !now.After(to) {
					f()
				}
			}
		}()
	}
	every(100*time.Millisecond, func() {
		var w, r float64
		for _, u := range servers {
			rep, _, err := scrape.Fetch(ctx, client, scrape.Target{URL: u + "/metrics"})
			if err != nil {
				return
			}
			w += rep.Waiting
			r += rep.Running
		}
		m.mu.Lock()
		defer m.mu.Unlock()
		m.samples++
		m.waiting += w
		m.running += r
		m.maxWaiting = max(m.maxWaiting, w)
	})
	m.done.Add(1)
	go func() {
		defer m.done.Done()
		for i, at := range []time.Time{from, to} {
			t := time.NewTimer(time.Until(at))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			q := gatherQueue(reps)
			m.mu.Lock()
			if i == 0 {
				m.q0 = &q
			} else {
				m.q1 = &q
			}
			m.mu.Unlock()
		}
	}()
	knew := make([]bool, len(reps))
	for i := range knew {
		knew[i] = true
	}
	every(5*time.Millisecond, func() {
		caps := capacities(reps)
		now := time.Now()
		m.mu.Lock()
		defer m.mu.Unlock()
		for i, c := range caps {
			m.views++
			if c == 0 {
				m.unknown++
				if knew[i] {
					m.lapses++
				}
			}
			knew[i] = c > 0
			reps[i].store.Load().EachProvider(func(p *routing.Provider) {
				if _, at := p.Health.LastReport(); !at.IsZero() {
					m.maxAge = max(m.maxAge, now.Sub(at))
				}
			})
		}
	})
	return m
}

// serverLoad is what the monitor saw: the servers' mean running and waiting requests, their
// most waiting at once, and the replicas' knowledge of the capacity.
type serverLoad struct {
	running, waiting, maxWaiting float64
	unknownViews                 float64 // share of samples without a known capacity
	lapses                       int
	maxAge                       time.Duration // of the oldest report a replica held
	learned                      []int         // each replica's capacity at the end of the run
}

// result ends the monitor and returns what it saw, and the replicas' queue metrics of the
// window (to now, if it has not closed yet).
func (m *monitor) result(reps []*replica) (serverLoad, queueStats) {
	m.stop()
	m.done.Wait()
	m.mu.Lock()
	defer m.mu.Unlock()
	q1 := m.q1
	if q1 == nil {
		q := gatherQueue(reps)
		q1 = &q
	}
	window := *q1
	if m.q0 != nil {
		window = q1.minus(*m.q0)
	}
	l := serverLoad{lapses: m.lapses, maxAge: m.maxAge}
	if m.samples > 0 {
		l.running, l.waiting, l.maxWaiting = m.running/float64(m.samples), m.waiting/float64(m.samples), m.maxWaiting
	}
	if m.views > 0 {
		l.unknownViews = float64(m.unknown) / float64(m.views)
	}
	l.learned = capacities(reps)
	return l, window
}

// queueOutcomes sums infergate_gateway_queue_outcomes_total over the replicas, by outcome
// (dispatched, full, shed, timeout, left), and by class and outcome; and the queue wait's sum
// and count by class.
type queueStats struct {
	outcomes   map[string]float64
	byClass    map[string]float64 // "class/outcome"
	waitSum    map[string]float64 // by class, and by workspace ("ws-3")
	waitCount  map[string]float64
	exchangeOK float64
	exchangeKO float64
}

// minus is q less what p counted.
func (q queueStats) minus(p queueStats) queueStats {
	sub := func(a, b map[string]float64) map[string]float64 {
		out := make(map[string]float64, len(a))
		for k, v := range a {
			out[k] = v - b[k]
		}
		return out
	}
	return queueStats{outcomes: sub(q.outcomes, p.outcomes), byClass: sub(q.byClass, p.byClass), waitSum: sub(q.waitSum, p.waitSum),
		waitCount: sub(q.waitCount, p.waitCount), exchangeOK: q.exchangeOK - p.exchangeOK, exchangeKO: q.exchangeKO - p.exchangeKO}
}

func gatherQueue(reps []*replica) queueStats {
	q := queueStats{outcomes: map[string]float64{}, byClass: map[string]float64{}, waitSum: map[string]float64{}, waitCount: map[string]float64{}}
	for _, r := range reps {
		families, err := r.reg.Gather()
		if err != nil {
			continue
		}
		for _, mf := range families {
			switch mf.GetName() {
			case "infergate_gateway_queue_outcomes_total":
				for _, m := range mf.GetMetric() {
					var class, outcome string
					for _, l := range m.GetLabel() {
						switch l.GetName() {
						case "class":
							class = l.GetValue()
						case "outcome":
							outcome = l.GetValue()
						}
					}
					v := m.GetCounter().GetValue()
					q.outcomes[outcome] += v
					q.byClass[class+"/"+outcome] += v
				}
			case "infergate_gateway_queue_wait_seconds":
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "class" || l.GetName() == "workspace" {
							q.waitSum[l.GetValue()] += m.GetHistogram().GetSampleSum()
							q.waitCount[l.GetValue()] += float64(m.GetHistogram().GetSampleCount())
						}
					}
				}
			case "infergate_fair_share_exchanges_total":
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "result" && l.GetValue() == "ok" {
							q.exchangeOK += m.GetCounter().GetValue()
						} else if l.GetName() == "result" {
							q.exchangeKO += m.GetCounter().GetValue()
						}
					}
				}
			}
		}
	}
	return q
}

// startRedis starts a redis-server for the replicas' fair-share counters; the signal handler
// kills it with the simulators.
func startRedis(bin string) (*redisproc.Server, error) {
	rs, err := redisproc.New(bin, "benchfairness")
	if err != nil {
		return nil, err
	}
	rs.Started, rs.Ended = adopt, release
	if err := rs.Start(); err != nil {
		rs.Stop()
		return nil, err
	}
	return rs, nil
}

// flushRedis empties the server at addr: each run starts its fair-share counters from nothing.
func flushRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	return c.FlushAll(ctx).Err()
}
