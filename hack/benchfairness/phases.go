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
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/infergate/infergate/hack/internal/redisproc"
	"github.com/infergate/infergate/internal/flow"
)

// grace is how long the open-loop requests of a run may take after its end; the closed loops
// keep the pool saturated meanwhile.
const grace = 30 * time.Second

// counts are a run's per-workspace figures inside its window.
type counts struct {
	tokens, completed, refused, failed [workspaces]int64
	firstErr                           error
	window                             time.Duration
}

func (l *load) counts() counts {
	var c counts
	for w := range workspaces {
		c.tokens[w], c.completed[w] = l.tokens[w].Load(), l.completed[w].Load()
		c.refused[w], c.failed[w] = l.refused[w].Load(), l.failed[w].Load()
	}
	if e := l.firstErr.Load(); e != nil {
		c.firstErr = *e
	}
	c.window = l.to - l.from
	return c
}

// tokensPerSecond is the output tokens per second of workspace w in the window.
func (c counts) tokensPerSecond(w int) float64 { return float64(c.tokens[w]) / c.window.Seconds() }

// prime sends one request to each url and waits for the answers, so that the measured
// requests find their connections open.
func prime(ctx context.Context, l *load, urls []string, model string) {
	var wg sync.WaitGroup
	for _, u := range urls {
		wg.Add(1)
		go func() { defer wg.Done(); stream(ctx, l.client, u, nil, l.prompts.body(model, true), nil) }()
	}
	wg.Wait()
}

// soloResult is an open-loop workload alone on an idle pool.
type soloResult struct {
	name     string
	outcomes []outcome
	c        counts
	queue    queueStats
}

func runSolo(ctx context.Context, seqs []int, arrivals []arrival, h http.Header, name string) (soloResult, error) {
	servers, stopPool, err := startPool(seqs, false)
	defer stopPool()
	if err != nil {
		return soloResult{}, err
	}
	reps, stopReps, err := startReplicas(ctx, spec(servers, true), 1, "")
	defer stopReps()
	if err != nil {
		return soloResult{}, err
	}
	d := *soloDur
	l := newLoad(time.Now(), 0, d, 1)
	prime(ctx, l, []string{reps[0].route(wsName(quietA)), reps[0].route(wsName(quietB))}, entityName)
	l = newLoad(time.Now().Add(100*time.Millisecond), 0, d, 2)
	octx, cancel := context.WithDeadline(ctx, l.start.Add(d+grace))
	defer cancel()
	out := l.openLoop(octx, arrivals, func(_ int, a arrival) string { return reps[0].route(wsName(a.ws)) }, entityName, h)
	return soloResult{name: name, outcomes: out, c: l.counts(), queue: gatherQueue(reps)}, nil
}

// fairConfig is one way of running the fairness load.
type fairConfig struct {
	name     string
	replicas int
	metrics  bool // the gateway reads the servers' metrics: it knows their capacity, and queues
	redis    *redisproc.Server
}

func fairnessConfigs(rs *redisproc.Server) []fairConfig {
	cfgs := []fairConfig{{name: "infergate, 1 replica", replicas: 1, metrics: true}}
	if rs != nil {
		cfgs = append(cfgs, fairConfig{name: fmt.Sprintf("infergate, %d replicas on Redis", *replicas), replicas: *replicas, metrics: true, redis: rs})
	}
	return append(cfgs, fairConfig{name: "unprotected (gateway without the servers' metrics: no queue)", replicas: 1})
}

// fairResult is one configuration's run of the fairness load.
type fairResult struct {
	cfg   fairConfig
	c     counts
	quiet []outcome
	load  serverLoad
	queue queueStats
}

func runFairness(ctx context.Context, seqs []int, cfg fairConfig) (fairResult, error) {
	res := fairResult{cfg: cfg}
	servers, stopPool, err := startPool(seqs, false)
	defer stopPool()
	if err != nil {
		return res, err
	}
	addr := ""
	if cfg.redis != nil {
		if err := flushRedis(ctx, cfg.redis.Addr); err != nil {
			return res, err
		}
		addr = cfg.redis.Addr
	}
	reps, stopReps, err := startReplicas(ctx, spec(servers, cfg.metrics), cfg.replicas, addr)
	defer stopReps()
	if err != nil {
		return res, err
	}
	time.Sleep(2**interval + 200*time.Millisecond) // the first scrapes
	if cfg.metrics {
		teach(ctx, servers, reps, sum(seqs))
	}
	start := time.Now().Add(100 * time.Millisecond)
	l := newLoad(start, *warmup, *duration, 3)
	mon := startMonitor(ctx, servers, reps, start.Add(*warmup), start.Add(*duration))

	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	k := 0 // client streams started, for the round-robin over replicas
	for ws := range backlogged + 1 {
		n := *streams
		if ws == flooder {
			n *= *flood
		}
		for range n {
			url := reps[k%len(reps)].route(wsName(ws))
			k++
			wg.Add(1)
			go func() { defer wg.Done(); l.closedLoop(lctx, url, entityName, nil, ws, ws == flooder) }()
		}
	}
	qctx, cancel := context.WithDeadline(ctx, start.Add(*duration+grace))
	res.quiet = l.openLoop(qctx, quietArrivals(*duration, 1), func(i int, a arrival) string { return reps[i%len(reps)].route(wsName(a.ws)) }, entityName, nil)
	cancel()
	// The open loop ends after the window; the closed loops kept the pool saturated until now.
	res.load, res.queue = mon.result(reps)
	stopLoad()
	wg.Wait()
	res.c = l.counts()
	return res, nil
}

// workResult is the flooding workspace alone, through the gateway or direct.
type workResult struct {
	direct bool
	c      counts
	load   serverLoad
	queue  queueStats
}

func runWork(ctx context.Context, seqs []int, direct bool) (workResult, error) {
	res := workResult{direct: direct}
	servers, stopPool, err := startPool(seqs, false)
	defer stopPool()
	if err != nil {
		return res, err
	}
	var reps []*replica
	urls, model := []string{}, served
	if direct {
		for _, s := range servers {
			urls = append(urls, s+"/v1/chat/completions")
		}
	} else {
		var stopReps func()
		reps, stopReps, err = startReplicas(ctx, spec(servers, true), 1, "")
		defer stopReps()
		if err != nil {
			return res, err
		}
		urls, model = []string{reps[0].route(wsName(flooder))}, entityName
		time.Sleep(2**interval + 200*time.Millisecond)
		teach(ctx, servers, reps, sum(seqs))
	}
	start := time.Now().Add(100 * time.Millisecond)
	l := newLoad(start, *warmup, *warmup+*workDur, 4)
	mon := startMonitor(ctx, servers, reps, start.Add(*warmup), start.Add(*warmup+*workDur))
	lctx, stopLoad := context.WithDeadline(ctx, start.Add(*warmup+*workDur))
	var wg sync.WaitGroup
	for i := range *streams * *flood {
		wg.Add(1)
		go func() { defer wg.Done(); l.closedLoop(lctx, urls[i%len(urls)], model, nil, flooder, true) }()
	}
	wg.Wait()
	stopLoad()
	res.load, res.queue = mon.result(reps)
	res.c = l.counts()
	return res, nil
}

// Workspaces of the priority phase: Sheddable streams on the first four, Critical arrivals on
// the first quiet one.
const (
	sheddableWorkspaces = 4
	criticalWorkspace   = quietA
)

// priorityResult is Critical arrivals with Sheddable overload.
type priorityResult struct {
	sheddableStreams int
	c                counts
	critical         []outcome
	load             serverLoad
	queue            queueStats
}

func runPriority(ctx context.Context, seqs []int) (priorityResult, error) {
	res := priorityResult{sheddableStreams: int(math.Round(*shedLoad * float64(sum(seqs))))}
	servers, stopPool, err := startPool(seqs, false)
	defer stopPool()
	if err != nil {
		return res, err
	}
	reps, stopReps, err := startReplicas(ctx, spec(servers, true), 1, "")
	defer stopReps()
	if err != nil {
		return res, err
	}
	time.Sleep(2**interval + 200*time.Millisecond)
	teach(ctx, servers, reps, sum(seqs))
	start := time.Now().Add(100 * time.Millisecond)
	l := newLoad(start, *warmup, *duration, 5)
	mon := startMonitor(ctx, servers, reps, start.Add(*warmup), start.Add(*duration))
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range res.sheddableStreams {
		ws := i % sheddableWorkspaces
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.closedLoop(lctx, reps[0].route(wsName(ws)), entityName, priority("Sheddable"), ws, false)
		}()
	}
	qctx, cancel := context.WithDeadline(ctx, start.Add(*duration+grace))
	res.critical = l.openLoop(qctx, poissonArrivals(*duration, *critRate, criticalWorkspace, 7), func(_ int, a arrival) string {
		return reps[0].route(wsName(a.ws))
	}, entityName, priority("Critical"))
	cancel()
	res.load, res.queue = mon.result(reps)
	stopLoad()
	wg.Wait()
	res.c = l.counts()
	return res, nil
}

// overheadResult is light load through a gateway that knows the pool's capacity (queue path:
// room computed, tickets admitted), one that does not (room unbounded), and direct.
type overheadResult struct {
	latencies [3][]time.Duration                // queue, no capacity known, direct
	parts     [overheadParts][3][]time.Duration // the same, by fifth of the run
	errors    [3]int
	firstErr  error
	learned   []int
	unknown   float64 // share of samples where the queue side did not know the capacity
	queue     queueStats
	admitNs   float64 // flow.Queue Admit+Started+Charge+Wake, in process, uncontended
}

// overheadParts are the parts of the overhead run whose p50 differences show its noise.
const overheadParts = 5

var overheadSides = [3]string{"gateway, capacity known (queue admits each request)", "gateway, same metrics, capacity not learned (room unbounded)", "direct to the servers"}

func runOverhead(ctx context.Context, seqs []int) (overheadResult, error) {
	var res overheadResult
	servers, stopPool, err := startPool(seqs, true)
	defer stopPool()
	if err != nil {
		return res, err
	}
	known, stopA, err := startReplicas(ctx, spec(servers, true), 1, "")
	defer stopA()
	if err != nil {
		return res, err
	}
	// The second reads the same metrics, but is never shown a server queueing: it does not
	// learn the capacity, and finds the room unbounded.
	unknown, stopB, err := startReplicas(ctx, spec(servers, true), 1, "")
	defer stopB()
	if err != nil {
		return res, err
	}
	time.Sleep(2**interval + 200*time.Millisecond)
	l := newLoad(time.Now(), 0, time.Hour, 6)
	small := func(model string) []byte {
		return []byte(`{"model":"` + model + `","messages":[{"role":"user","content":"Say hello."}]}`)
	}

	// Teach the first gateway the servers' capacity: a burst of slow requests, more than they
	// run at once, until it has seen requests waiting while others ran.
	slow := http.Header{"X-Sim-Chunks": {"40"}, "X-Sim-Chunk-Delay": {"25ms"}}
	bctx, stopBurst := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 2 * sum(seqs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bctx.Err() == nil {
				_, _ = call(bctx, l.client, known[0].route(wsName(0)), slow, small(entityName))
			}
		}()
	}
	deadline := time.Now().Add(15 * time.Second)
	for capacities(known)[0] == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	stopBurst()
	wg.Wait()
	time.Sleep(time.Second)

	urls := [3]string{known[0].route(wsName(0)), unknown[0].route(wsName(0)), servers[0] + "/v1/chat/completions"}
	models := [3]string{entityName, entityName, served}
	for side := range 3 { // open the connections
		for range 20 {
			_, _ = call(ctx, l.client, urls[side], nil, small(models[side]))
		}
	}
	start := time.Now().Add(100 * time.Millisecond)
	mon := startMonitor(ctx, servers, known, start, start.Add(*overheadDur))
	every := time.Duration(float64(time.Second) / *overheadRPS)
	n := int(overheadDur.Seconds() * *overheadRPS)
	var mu sync.Mutex
	// Each round of three sends to every side once, in an order of its own: no side always
	// follows the same other.
	rng := rand.New(rand.NewPCG(*seed, 8))
	var order [3]int
	for i := range n {
		sleep(ctx, time.Until(start.Add(time.Duration(i)*every)))
		if i%3 == 0 {
			order = [3]int{0, 1, 2}
			rng.Shuffle(3, func(a, b int) { order[a], order[b] = order[b], order[a] })
		}
		side := order[i%3]
		url := urls[side]
		if side == 2 {
			url = servers[(i/3)%len(servers)] + "/v1/chat/completions"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := call(ctx, l.client, url, nil, small(models[side]))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.errors[side]++
				if res.firstErr == nil {
					res.firstErr = err
				}
				return
			}
			res.latencies[side] = append(res.latencies[side], d)
			part := i * overheadParts / n
			res.parts[part][side] = append(res.parts[part][side], d)
		}()
	}
	wg.Wait()
	load, queue := mon.result(known)
	res.learned, res.unknown, res.queue = load.learned, load.unknownViews, queue

	r := testing.Benchmark(func(b *testing.B) {
		q := flow.NewQueue()
		room := flow.Room{Free: 8, Capacity: 16}
		t := &flow.Ticket{Workspace: "ws-0", Weight: 1, Cost: 250}
		for b.Loop() {
			_, _ = q.Admit(t, room, 1024, time.Now())
			q.Started(t)
			q.Charge(t, 64)
			q.Wake()
		}
	})
	res.admitNs = float64(r.T.Nanoseconds()) / float64(max(r.N, 1))
	return res, nil
}
