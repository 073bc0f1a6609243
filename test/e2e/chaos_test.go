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
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

// simProcess is a simulator process on a fixed address, which a test may kill and start again.
type simProcess struct {
	t               *testing.T
	bin, addr, name string
	cmd             *exec.Cmd
}

// buildSimulator builds cmd/simulator into dir.
func buildSimulator(t *testing.T, dir string) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "simulator")
	build := exec.Command("go", "build", "-o", bin, "./cmd/simulator")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/simulator: %v\n%s", err, out)
	}
	return bin
}

func startSimProcess(t *testing.T, bin, name string) *simProcess {
	t.Helper()
	s := &simProcess{t: t, bin: bin, addr: testutil.FreeAddr(t), name: name}
	s.start()
	t.Cleanup(func() {
		if s.cmd != nil {
			s.kill()
		}
	})
	return s
}

func (s *simProcess) url() string { return "http://" + s.addr }

// start runs the simulator and waits until it answers.
func (s *simProcess) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "--listen", s.addr, "--name", s.name, "--models", served, "--chunks", "20", "--chunk-delay", "20ms")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(s.url() + "/v1/models"); err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("simulator %s does not answer on %s", s.name, s.addr)
		}
	}
}

// kill ends the simulator with SIGKILL: no goodbye, its connections reset.
func (s *simProcess) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

// served is how many generations the simulator has completed since it started, from its
// own metrics (vllm:request_success_total).
func (s *simProcess) served() int {
	resp, err := http.Get(s.url() + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "vllm:request_success_total") {
			if f := strings.Fields(line); len(f) == 2 {
				v, _ := strconv.ParseFloat(f[1], 64)
				total += v
			}
		}
	}
	return int(total)
}

// serveLlama starts a simulator process for each of names, applies a Provider for each (with
// providerSpec added to its spec, such as "probeInterval: 2s") and ModelEntity team/llama over
// them (with entitySpec added), and waits until llama routes through c's first manager.
func (c *cluster) serveLlama(names []string, providerSpec, entitySpec string) []*simProcess {
	c.t.Helper()
	bin := buildSimulator(c.t, c.dir)
	var sims []*simProcess
	manifest := ""
	for _, name := range names {
		s := startSimProcess(c.t, bin, name)
		sims = append(sims, s)
		manifest += `
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: ` + s.name + `, namespace: team}
spec: {url: "` + s.url() + `"` + prefixed(", ", providerSpec) + `}
---`
	}
	c.apply(manifest + `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama, namespace: team}
spec: {servedModelName: ` + served + prefixed(", ", entitySpec) + `}
`)
	c.routableOn(30*time.Second, "team", "llama", c.manager)
	return sims
}

// prefixed returns s after prefix, or "" when s is empty.
func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// tally counts what the clients of a load saw.
type tally struct {
	mu sync.Mutex
	// Non-streaming requests.
	ok, failed int
	// Streams: complete (finish_reason stop, every token), cut (an error after some tokens),
	// refused (an error before any), and short (no error, yet incomplete: a silent truncation).
	complete, cut, refused, short int
	errors                        map[string]int // by message
	kinds                         map[string]int // by HTTP status, or what the client saw
}

func newTally() *tally { return &tally{errors: map[string]int{}, kinds: map[string]int{}} }

// failure counts a request's error, by message and by kind: the HTTP status of an API error,
// "cut" for a stream that ended with an error after some tokens, or "connection" otherwise.
func (t *tally) failure(err error, cut bool) {
	t.errors[err.Error()]++
	var apiErr *openai.Error
	switch {
	case errors.As(err, &apiErr):
		t.kinds[strconv.Itoa(apiErr.StatusCode)]++
	case cut:
		t.kinds["cut"]++
	default:
		t.kinds["connection"]++
	}
}

// call counts a non-streaming request that ended with err.
func (t *tally) call(err error) {
	t.add(func(t *tally) {
		if err != nil {
			t.failed++
			t.failure(err, false)
		} else {
			t.ok++
		}
	})
}

// stream counts a stream that ended with err after got tokens, the last event saying finish;
// a complete one has tokens tokens and finishes with stop.
func (t *tally) stream(err error, got int, finish string, tokens int) {
	t.add(func(t *tally) {
		switch {
		case err != nil && got == 0:
			t.refused++
			t.failure(err, false)
		case err != nil:
			t.cut++
			t.failure(err, true)
		case finish != "stop" || got != tokens:
			t.short++
		default:
			t.complete++
		}
	})
}

// row is the tally as a line of the chaos report.
func (t *tally) row(scenario, figure string) testutil.ChaosRow {
	t.mu.Lock()
	defer t.mu.Unlock()
	failed := maps.Clone(t.kinds)
	if t.short > 0 {
		failed["silently short"] = t.short
	}
	return testutil.ChaosRow{Scenario: scenario, Sent: t.ok + t.failed + t.complete + t.cut + t.refused + t.short,
		Succeeded: t.ok + t.complete, Failed: failed, Figure: figure}
}

// merge adds o's counts to t's.
func (t *tally) merge(o *tally) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t.add(func(t *tally) {
		t.ok, t.failed, t.complete, t.cut, t.refused, t.short = t.ok+o.ok, t.failed+o.failed, t.complete+o.complete, t.cut+o.cut, t.refused+o.refused, t.short+o.short
		for k, n := range o.errors {
			t.errors[k] += n
		}
		for k, n := range o.kinds {
			t.kinds[k] += n
		}
	})
}

func (t *tally) add(f func(*tally)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t)
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return fmt.Sprintf("non-streaming: %d succeeded, %d failed; streams: %d complete, %d cut with an error, %d refused, %d silently short; errors %v",
		t.ok, t.failed, t.complete, t.cut, t.refused, t.short, t.errors)
}

// load sends chat requests, every other one streamed, from workers clients until ctx ends; a
// complete stream has tokens tokens.
func load(ctx context.Context, c *openai.Client, workers, tokens int, tl *tally) *sync.WaitGroup {
	var wg sync.WaitGroup
	var n atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := n.Add(1)
				params := openai.ChatCompletionNewParams{Model: "llama",
					Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("Request %d", i))}}
				// The requests themselves run to their end: only new ones stop with ctx.
				rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if i%2 == 0 {
					_, err := c.Chat.Completions.New(rctx, params)
					tl.call(err)
					cancel()
					continue
				}
				s := c.Chat.Completions.NewStreaming(rctx, params)
				got, finish := 0, ""
				for s.Next() {
					ch := s.Current()
					if len(ch.Choices) > 0 {
						if ch.Choices[0].Delta.Content != "" {
							got++
						}
						if ch.Choices[0].FinishReason != "" {
							finish = ch.Choices[0].FinishReason
						}
					}
				}
				tl.stream(s.Err(), got, finish, tokens)
				cancel()
			}
		}()
	}
	return &wg
}

// A provider's model server is killed (SIGKILL) under streaming and non-streaming load, then
// comes back (issue 13's first scenario, with a small load). Requests that had not reached it
// are answered by the others (the entity also allows retrying a reset, for the non-streaming
// requests it may have been running); streams it was sending end with an error the SDK
// surfaces, never a silent truncation; once it is back, it gets traffic again. The assertions
// are on counts; the time until traffic returns is logged.
func TestProviderKilledUnderLoad(t *testing.T) {
	c := startCluster(t)
	sims := c.serveLlama([]string{"sim-a", "sim-b", "sim-c"}, "probeInterval: 2s", "retryOn: [Reset]")
	// All three in rotation before one dies.
	c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/llama", "provider/sim-a", "provider/sim-b", "provider/sim-c", "--timeout=30s")

	tl := newTally()
	ctx, stop := context.WithCancel(context.Background())
	wg := load(ctx, c.openai("team"), testutil.ChaosSize(6, 24), 20, tl)
	victim := sims[1]
	time.Sleep(testutil.ChaosSize(2*time.Second, 15*time.Second))
	if victim.served() == 0 {
		t.Fatal("the provider to kill served nothing: the test would prove nothing")
	}
	victim.kill()
	time.Sleep(testutil.ChaosSize(3*time.Second, 15*time.Second))
	victim.start()
	back := time.Now()
	c.eventually(60*time.Second, func() error {
		if victim.served() == 0 {
			return fmt.Errorf("no traffic to %s %s after it came back", victim.name, time.Since(back).Round(time.Millisecond))
		}
		return nil
	})
	returned := time.Since(back)
	time.Sleep(testutil.ChaosSize(time.Second, 15*time.Second))
	stop()
	wg.Wait()
	t.Log(tl)
	testutil.ReportChaos(t, tl.row("1. a provider of three killed (SIGKILL) and restarted",
		fmt.Sprintf("streams it was sending: %d cut with an error the SDK reports, 0 silently short; traffic back to it %s after it restarted (probeInterval 2s)",
			tl.cut, returned.Round(100*time.Millisecond))))

	if tl.failed != 0 || tl.refused != 0 || tl.short != 0 {
		t.Errorf("clients saw failures: %s", tl)
	}
	if tl.ok == 0 || tl.complete == 0 {
		t.Errorf("the load did not run: %s", tl)
	}
}

// The API server stops answering (its process frozen with SIGSTOP: connections stay open and
// nothing comes back, as in a partition) under load through two replicas (issue 13's third
// scenario: 60 s under make chaos, 12 s in make test, past the leader's renew deadline either
// way). Every request keeps succeeding on both, and neither exits; once it answers again, a
// ModelEntity created then routes on both, and a leader's controllers make it Ready. The
// assertions are on counts; the times are reported.
func TestAPIServerAwayUnderLoad(t *testing.T) {
	c, follower := startTwoReplicas(t, "llama")
	replicas := []*manager{c.manager, follower}

	ctx, stop := context.WithCancel(context.Background())
	tallies := make([]*tally, len(replicas))
	var loads []*sync.WaitGroup
	for i, m := range replicas {
		tallies[i] = newTally()
		loads = append(loads, load(ctx, c.openaiVia(m, "team"), testutil.ChaosSize(3, 8), 4, tallies[i]))
	}
	time.Sleep(time.Second)
	pid := c.apiServerPID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	t.Cleanup(func() {
		if !resumed {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	})
	// Longer than the leader's lease renewal deadline (10 s): the leader loses its lease, its
	// controllers stop, and its gateway must go on serving (controller-runtime's own election
	// would end the process).
	away := testutil.ChaosSize(12*time.Second, 60*time.Second)
	time.Sleep(away)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumed = true
	back := time.Now()
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: after, namespace: team}
spec: {servedModelName: ` + served + `}
`)
	c.routableOn(30*time.Second, "team", "after", replicas...)
	routable := time.Since(back)
	// A leader is elected again and its controllers resolve the new entity.
	c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/after", "--timeout=60s")
	ready := time.Since(back)
	if !strings.Contains(c.manager.logs.String()+follower.logs.String(), "lost the lease") {
		t.Error("no replica lost the lease while the API server was away: the scenario did not test what it should")
	}
	for i, m := range replicas {
		select {
		case err := <-m.exited:
			m.exited <- err // for the cleanup
			t.Errorf("replica %d exited: %v", i, err)
		default:
		}
	}
	stop()
	all := newTally()
	for i, wg := range loads {
		wg.Wait()
		t.Logf("replica %d: %s", i, tallies[i])
		if tl := tallies[i]; tl.failed != 0 || tl.refused != 0 || tl.cut != 0 || tl.short != 0 || tl.ok == 0 || tl.complete == 0 {
			t.Errorf("replica %d: clients saw failures while the API server was away: %s", i, tl)
		}
		all.merge(tallies[i])
	}
	testutil.ReportChaos(t, all.row(fmt.Sprintf("3. the API server frozen for %s under two replicas", away),
		fmt.Sprintf("an entity applied when it came back routes on both replicas %s later, and is Ready (a leader elected again) %s later",
			routable.Round(10*time.Millisecond), ready.Round(10*time.Millisecond))))
}

// service stands for a Kubernetes Service in front of the gateway replicas: it forwards each
// new TCP connection to one of its endpoints, in turn. A replica that is shutting down is
// removed from the endpoints, as the endpoints controller does once its pod terminates.
type service struct {
	ln        net.Listener
	mu        sync.Mutex
	endpoints []string
	next      int
	conns     map[string]int // connections forwarded to each endpoint
}

func newService(t *testing.T, endpoints ...string) *service {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{ln: ln, endpoints: endpoints, conns: map[string]int{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go s.forward(conn)
		}
	}()
	return s
}

func (s *service) url() string { return "http://" + s.ln.Addr().String() }

// connections returns how many connections were forwarded to each endpoint.
func (s *service) connections() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.conns)
}

func (s *service) remove(endpoint string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints = slices.DeleteFunc(s.endpoints, func(e string) bool { return e == endpoint })
}

func (s *service) forward(conn net.Conn) {
	defer conn.Close()
	s.mu.Lock()
	endpoint := s.endpoints[s.next%len(s.endpoints)]
	s.next++
	s.conns[endpoint]++
	s.mu.Unlock()
	up, err := net.Dial("tcp", endpoint)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, conn); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); done <- struct{}{} }()
	<-done
}

// A replica is drained (SIGTERM, --gateway-shutdown-delay) with 200 streams open on it, while
// clients that retry connection errors as the SDKs do call through a Service (issue 13's fourth
// scenario). No request fails, and every stream open on the draining replica finishes.
func TestReplicaDrainedUnderLoad(t *testing.T) {
	drain := []string{"--gateway-shutdown-delay", "2s", "--gateway-shutdown-timeout", "30s"}
	c := startCluster(t, drain...)
	draining := c.startManager(drain...)
	sim := simulator.New(simulator.Options{Name: "sim", Models: []string{served}, Chunks: 40, ChunkDelay: 100 * time.Millisecond})
	up := httptest.NewServer(sim)
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
`)
	c.routableOn(20*time.Second, "team", "llama", c.manager, draining)
	host := func(m *manager) string { return strings.TrimPrefix(m.gateway, "http://") }
	svc := newService(t, host(c.manager), host(draining))

	// 200 streams of 4 s open on the replica to drain.
	direct := c.openaiVia(draining, "team")
	streams := newTally()
	var open sync.WaitGroup
	var started atomic.Int32
	for i := range 200 {
		open.Add(1)
		go func() {
			defer open.Done()
			s := direct.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "llama",
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("Long answer %d", i))}})
			got, finish := 0, ""
			for s.Next() {
				if ch := s.Current(); len(ch.Choices) > 0 {
					if ch.Choices[0].Delta.Content != "" {
						if got++; got == 1 {
							started.Add(1)
						}
					}
					if ch.Choices[0].FinishReason != "" {
						finish = ch.Choices[0].FinishReason
					}
				}
			}
			streams.stream(s.Err(), got, finish, 40)
		}()
	}
	c.eventually(20*time.Second, func() error {
		if n := started.Load(); n < 200 {
			return fmt.Errorf("%d of 200 streams started", n)
		}
		return nil
	})

	// Clients of the Service, with the SDK's retries of connection errors, asking for short
	// answers (the simulator's X-Sim headers pass through the gateway).
	retrying := openai.NewClient(option.WithBaseURL(svc.url()+"/apis/inference-gateway/v2/workspaces/team/openai/-/v1/"),
		option.WithAPIKey(c.token), option.WithMaxRetries(2),
		option.WithHeader("X-Sim-Chunks", "4"), option.WithHeader("X-Sim-Chunk-Delay", "10ms"))
	ctx, stop := context.WithCancel(context.Background())
	calls := newTally()
	wg := load(ctx, &retrying, testutil.ChaosSize(4, 12), 4, calls)
	time.Sleep(500 * time.Millisecond)

	if svc.connections()[host(draining)] == 0 {
		t.Fatal("no client of the Service is connected to the replica to drain: the test would prove nothing")
	}
	if err := draining.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	drainStarted := time.Now()
	svc.remove(host(draining)) // the endpoints controller takes the terminating pod out
	open.Wait()
	err := <-draining.exited
	draining.exited <- err // for the cleanup
	drained := time.Since(drainStarted)
	if err != nil {
		t.Errorf("the drained manager exited with %v", err)
	}
	time.Sleep(time.Second)
	stop()
	wg.Wait()
	t.Logf("streams open on the drained replica: %s", streams)
	t.Logf("clients of the Service: %s; connections it forwarded: %v", calls, svc.connections())
	all := newTally()
	all.merge(streams)
	all.merge(calls)
	testutil.ReportChaos(t, all.row("4. a replica drained (SIGTERM, --gateway-shutdown-delay 2s) with 200 streams open on it",
		fmt.Sprintf("%d of 200 streams open on it finished; it exited %s after SIGTERM; SDK clients with 2 retries through a Service",
			streams.complete, drained.Round(100*time.Millisecond))))
	if streams.complete != 200 {
		t.Errorf("of 200 streams open on the drained replica, %d finished: %s", streams.complete, streams)
	}
	if calls.failed != 0 || calls.refused != 0 || calls.cut != 0 || calls.short != 0 || calls.ok == 0 {
		t.Errorf("clients of the Service saw failures: %s", calls)
	}
}
