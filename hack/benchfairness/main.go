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

// Command benchfairness measures who waits, and who is served, when the model servers of a
// pool are saturated (issue 23): ten workspaces, each with a ModelEntity of its own over the
// same providers (so one pool, one queue), on simulated vLLM servers (./cmd/simulator, one
// process each), through the real internal/gateway package in this process, one replica or
// three sharing their fair-share counters through a redis-server that it starts.
//
// Phases (-phases):
//
//   - solo: the two quiet workspaces' Poisson arrivals alone on an idle pool: the TTFT baseline;
//   - fairness: seven backlogged workspaces (-backlog-streams closed-loop streams each), one
//     flooding with -flood times as many (which, unlike the others, does not wait out a 429's
//     Retry-After: it stays backlogged), and the two quiet ones again, run three times, each
//     on a fresh pool: through one gateway replica with its queue, through -replicas replicas
//     sharing Redis (each client stream on one replica, round-robin), and unprotected (the
//     providers without metrics, so that the gateway never knows their capacity and queues
//     nothing: the servers' own FIFO queues decide). Jain's fairness index over the output
//     tokens served to the backlogged workspaces and the flooder, and the quiet workspaces'
//     TTFT against their solo baseline;
//   - work: the flooding workspace alone, through the gateway with its queue and directly to
//     the servers: tokens per second (work conservation);
//   - priority: Critical Poisson arrivals (X-Infergate-Priority) alone, then mixed with Sheddable
//     closed-loop streams at -sheddable-load times the pool's capacity;
//   - overhead: light non-streaming load on fast servers through two gateways at once, both
//     reading the servers' metrics, one taught the pool's capacity (the queue computes the room
//     and admits each request) and one not (the room is unbounded), and direct, interleaved:
//     the difference of the gateways' p50; and the flow queue's own uncontended Admit, in
//     process.
//
// Prompts (-prompt-tokens) and outputs (-chunks, sent as max_tokens) vary from half to one and
// a half times their mean, uniformly, and no two prompts share a prefix.
//
// The gateway queues only what it knows would queue upstream: it learns a server's capacity
// from its metrics when the server shows requests waiting while others run. Before each run
// through gateways that read the metrics, a burst from an eleventh workspace teaches them, and
// ends; the workspaces measured then start even. The first -warmup of each saturated run is
// left out of the figures.
//
// The report, in Markdown on standard output, ends with the targets checked.
//
//	go run ./hack/benchfairness            (make bench-fairness; about 14 minutes)
//	go run ./hack/benchfairness -short     (about 4 minutes)
//	go run ./hack/benchfairness -phases fairness -duration 1m
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/infergate/infergate/hack/internal/redisproc"
	"github.com/infergate/infergate/internal/flow"
)

const (
	served     = "meta/llama-3.1-8b-instruct"
	entityName = "llama"

	backlogged = 7 // ws-0 … ws-6
	flooder    = 7 // ws-7
	quietA     = 8 // ws-8, ws-9
	quietB     = 9
	workspaces = 10
)

func wsName(i int) string { return "ws-" + strconv.Itoa(i) }

var (
	short       = flag.Bool("short", false, "a quick run: saturated runs of 35 s (10 s of warm-up), solo runs of 20 s, work runs of 15 s, 10 s of overhead (flags given explicitly win)")
	phasesFlag  = flag.String("phases", "solo,fairness,work,priority,overhead", "phases to run")
	poolFlag    = flag.String("pool", "8,8", "max-num-seqs of each simulated server")
	chunks      = flag.Int("chunks", 64, "mean output tokens of a request (max_tokens), uniform from half to one and a half times it")
	chunkDelay  = flag.Duration("chunk-delay", 10*time.Millisecond, "the servers' decode step with one sequence running")
	perSeq      = flag.Duration("decode-time-per-seq", 500*time.Microsecond, "added to a decode step for each other running sequence")
	prefill     = flag.Duration("prefill-time-per-token", 50*time.Microsecond, "the servers' prefill time per prompt token")
	promptToks  = flag.Int("prompt-tokens", 1000, "mean prompt tokens of a request (4 bytes each), uniform from half to one and a half times it; each prompt unique: no prefix cache hits")
	kvBlocks    = flag.Int("kv-cache-blocks", 4096, "the servers' KV cache blocks of 16 tokens")
	streams     = flag.Int("backlog-streams", 4, "closed-loop streams of each backlogged workspace")
	flood       = flag.Int("flood", 10, "the flooding workspace's streams, as a multiple of a backlogged workspace's")
	retryPause  = flag.Duration("flooder-retry", 200*time.Millisecond, "pause of a flooding stream after a 429: it ignores Retry-After, and stays backlogged")
	quietRate   = flag.Float64("quiet-rate", 1, "requests per second of each quiet workspace (Poisson)")
	critRate    = flag.Float64("critical-rate", 2, "requests per second of the Critical workspace (Poisson)")
	shedLoad    = flag.Float64("sheddable-load", 2, "Sheddable closed-loop streams, as a multiple of the pool's capacity")
	duration    = flag.Duration("duration", 2*time.Minute, "length of each saturated run (fairness, priority mix)")
	warmup      = flag.Duration("warmup", 15*time.Second, "leading part of each saturated run (and work run) left out of the figures")
	soloDur     = flag.Duration("solo-duration", time.Minute, "length of each solo run (quiet, Critical)")
	workDur     = flag.Duration("work-duration", 45*time.Second, "length of each work-conserving run, after its warm-up")
	overheadDur = flag.Duration("overhead-duration", 30*time.Second, "length of the overhead run")
	overheadRPS = flag.Float64("overhead-rate", 150, "requests per second of the overhead run, all sides together")
	replicas    = flag.Int("replicas", 3, "gateway replicas sharing Redis in the second fairness run")
	interval    = flag.Duration("scrape-interval", 50*time.Millisecond, "interval of the gateway's reads of the servers' metrics")
	exchange    = flag.Duration("exchange-interval", flow.DefaultExchangeInterval, "interval of the replicas' exchanges of fair-share counters")
	queueTime   = flag.Duration("max-queue-time", 0, "the entities' spec.queue.maxTime (0: the gateway's default)")
	seed        = flag.Uint64("seed", 1, "seed of arrivals and prompts")
	simBinary   = flag.String("simulator", "", "simulator binary (default: built from ./cmd/simulator)")
	redisBin    = flag.String("redis-server", "", "redis-server binary (default: $REDIS_SERVER, else redis-server on PATH)")
)

func main() {
	flag.Parse()
	if *short {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"duration": "35s", "warmup": "10s", "solo-duration": "20s", "work-duration": "15s", "overhead-duration": "10s"} {
			if !set[name] {
				_ = flag.Set(name, v)
			}
		}
	}
	// An interrupted run takes its simulators and redis-server with it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		killChildren()
		if dir := tmpDir.Load(); dir != nil {
			_ = os.RemoveAll(*dir)
		}
		fmt.Fprintln(os.Stderr, "benchfairness: interrupted")
		os.Exit(1)
	}()
	if err := run(); err != nil {
		killChildren()
		fmt.Fprintln(os.Stderr, "benchfairness:", err)
		os.Exit(1)
	}
}

// tmpDir holds the simulator built for the run, removed even when it is interrupted.
var tmpDir atomic.Pointer[string]

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run() error {
	seqs, err := ints(*poolFlag)
	if err != nil {
		return fmt.Errorf("-pool: %w", err)
	}
	if *warmup >= *duration {
		return errors.New("-warmup must be shorter than -duration")
	}
	want := map[string]bool{}
	for _, p := range strings.Split(*phasesFlag, ",") {
		switch p = strings.TrimSpace(p); p {
		case "solo", "fairness", "work", "priority", "overhead":
			want[p] = true
		default:
			return fmt.Errorf("-phases: unknown phase %q", p)
		}
	}
	if *simBinary == "" {
		dir, err := os.MkdirTemp("", "benchfairness")
		if err != nil {
			return err
		}
		tmpDir.Store(&dir)
		defer os.RemoveAll(dir)
		*simBinary = filepath.Join(dir, "simulator")
		logf("building the simulator")
		if out, err := exec.Command("go", "build", "-o", *simBinary, "./cmd/simulator").CombinedOutput(); err != nil {
			return fmt.Errorf("build the simulator: %v\n%s", err, out)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep := &report{pool: seqs}
	started := time.Now()

	if want["solo"] || want["fairness"] {
		logf("solo: the quiet workspaces alone for %v", *soloDur)
		if rep.solo, err = runSolo(ctx, seqs, quietArrivals(*soloDur, 1), nil, "solo"); err != nil {
			return err
		}
	}
	if want["fairness"] {
		var rs *redisproc.Server
		if *replicas > 1 {
			if rs, err = startRedis(*redisBin); err != nil {
				return err
			}
			defer rs.Stop()
		}
		for _, cfg := range fairnessConfigs(rs) {
			logf("fairness: %s for %v", cfg.name, *duration)
			res, err := runFairness(ctx, seqs, cfg)
			if err != nil {
				return err
			}
			rep.fairness = append(rep.fairness, res)
		}
	}
	if want["work"] {
		for _, direct := range []bool{false, true} {
			logf("work-conserving: the flooder alone (direct %v) for %v after %v of warm-up", direct, *workDur, *warmup)
			res, err := runWork(ctx, seqs, direct)
			if err != nil {
				return err
			}
			rep.work = append(rep.work, res)
		}
	}
	if want["priority"] {
		logf("priority: Critical alone for %v", *soloDur)
		if rep.critSolo, err = runSolo(ctx, seqs, poissonArrivals(*soloDur, *critRate, criticalWorkspace, 7), priority("Critical"), "Critical alone"); err != nil {
			return err
		}
		logf("priority: Critical and Sheddable for %v", *duration)
		if rep.priority, err = runPriority(ctx, seqs); err != nil {
			return err
		}
	}
	if want["overhead"] {
		logf("overhead: light load for %v", *overheadDur)
		if rep.overhead, err = runOverhead(ctx, seqs); err != nil {
			return err
		}
	}
	rep.elapsed = time.Since(started)
	rep.write(os.Stdout)
	return nil
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

func sum(v []int) int {
	t := 0
	for _, x := range v {
		t += x
	}
	return t
}
