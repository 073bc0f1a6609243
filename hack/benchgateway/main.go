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

// Command benchgateway measures the gateway against a direct call to the same upstream, in one
// run on one machine: it starts the simulator and a gateway in processes of their own, drives
// the same load at both with vegeta, and prints a Markdown report.
//
//	go run ./hack/benchgateway            (make bench-gateway)
//
// Figures: saturation throughput direct and through the gateway; added latency at a fixed
// rate; the gateway's CPU time, allocations and RSS per request; for streams, the added time
// to the first chunk and the added inter-chunk gap. Then the same gateway with tracing on
// against off, and with authentication against without.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"go.opentelemetry.io/otel/trace"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/tracing"
)

const served = "meta/llama-3.1-8b-instruct"

var (
	role           = flag.String("role", "", "internal: run as the simulator or the gateway process")
	authKubeconfig = flag.String("auth-kubeconfig", "", "internal: kubeconfig of the API server of the authenticating gateway")
	authRounds     = flag.Int("auth-rounds", 4, "alternating rounds of the authentication comparison")
	traced         = flag.Bool("tracing", true, "also measure the gateway with tracing on (every request sampled, spans exported over OTLP/HTTP to a loopback sink) against off")
	tracingRounds  = flag.Int("tracing-rounds", 2, "alternating rounds of the tracing comparison")
	auth           = flag.Bool("auth", true, "also measure the gateway with --gateway-auth=kubernetes against a local API server (needs KUBEBUILDER_ASSETS; make bench-gateway sets it)")
	listen         = flag.String("listen", "", "internal: address to listen on")
	upstream       = flag.String("upstream", "", "internal: the gateway's upstream URL")
	duration       = flag.Duration("duration", 10*time.Second, "length of each measured phase")
	rate           = flag.Int("rate", 2000, "fixed request rate for the latency phase, per second")
	workers        = flag.Int("workers", 64, "concurrent connections for the saturation phase")
	streams        = flag.Int("streams", 400, "streams per side in the streaming phase")
	chunks         = flag.Int("chunks", 20, "chunks per stream")
	profile        = flag.String("cpuprofile", "", "write a CPU profile of the gateway during the fixed-rate phase to this file")
	authProf       = flag.String("auth-cpuprofile", "", "write CPU profiles of the gateway without and with authentication during their first saturation phase to this path plus .none and .kubernetes")
	chunkDelay     = flag.Duration("chunk-delay", 5*time.Millisecond, "pause between chunks of a stream")
)

func main() {
	flag.Parse()
	var err error
	switch *role {
	case "simulator":
		err = serve(*listen, simulator.New(simulator.Options{Models: []string{served}, APIKey: "bench-key"}))
	case "gateway":
		err = runGateway(nil)
	case "gateway-auth":
		err = runAuthGateway()
	case "gateway-traced":
		err = runTracedGateway()
	case "bare":
		err = runBareProxy()
	case "":
		err = orchestrate()
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchgateway:", err)
		os.Exit(1)
	}
}

func serve(addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

// runAuthGateway is runGateway with the manager's authentication and authorization
// (access.Checker) against the API server of -kubeconfig, with its default cache TTLs.
func runAuthGateway() error {
	cfg, err := clientcmd.BuildConfigFromFlags("", *authKubeconfig)
	if err != nil {
		return err
	}
	checker, err := access.New(cfg, access.Options{})
	if err != nil {
		return err
	}
	return runGateway(checker)
}

// runTracedGateway is runGateway with the manager's tracing, configured as the manager
// configures it: from the OTEL_* variables that the orchestrator sets.
func runTracedGateway() error {
	tp, stop, err := tracing.FromEnv(context.Background())
	if err != nil {
		return err
	}
	if tp == nil {
		return errors.New("no tracer provider: OTEL_EXPORTER_OTLP_ENDPOINT is not set")
	}
	defer func() { _ = stop(context.Background()) }()
	return serveGateway(nil, tp)
}

// runGateway serves the real gateway package with a table that routes bench/llama to the
// upstream, plus an endpoint reporting the process's allocation counters.
func runGateway(checker gateway.Access) error { return serveGateway(checker, nil) }

func serveGateway(checker gateway.Access, tp trace.TracerProvider) error {
	store := routing.NewStore()
	table, errs := routing.New(routing.Spec{
		Providers: []routing.ProviderSpec{{Workspace: "bench", Name: "sim", BaseURL: *upstream, Ready: true,
			AuthHeader: "Authorization", AuthValue: "Bearer bench-key"}},
		Entities: []routing.EntitySpec{{Workspace: "bench", Name: "llama", Created: time.Now(),
			Backends: []routing.BackendSpec{{Workspace: "bench", Name: "sim", ServedModel: served, Weight: 1}}}},
	}, nil)
	if len(errs) > 0 {
		return errs[0]
	}
	store.Swap(table)
	g, err := gateway.New(gateway.Options{Store: store, Access: checker, AllowLocalUpstreams: true, TracerProvider: tp})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", g)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/benchstats", func(w http.ResponseWriter, _ *http.Request) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(map[string]uint64{"mallocs": ms.Mallocs, "bytes": ms.TotalAlloc})
	})
	return serve(*listen, mux)
}

// runBareProxy serves a plain httputil.ReverseProxy to the upstream: the floor that any
// gateway built on net/http pays, measured for reference.
func runBareProxy() error {
	target, err := url.Parse(*upstream)
	if err != nil {
		return err
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
	return serve(*listen, rp)
}

type proc struct {
	cmd  *exec.Cmd
	addr string
}

func start(args ...string) (*proc, error) { return startWithEnv(nil, args...) }

// startWithEnv starts this program with args and env added to the environment.
func startWithEnv(env []string, args ...string) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(self, append(args, "-listen", addr)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, addr: addr}
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%v did not start", args)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// cpu returns the process's user+system CPU time from /proc.
func (p *proc) cpu() time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
}

// rss returns the process's resident and peak resident set size in KiB.
func (p *proc) rss() (current, peak int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			current, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			peak, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return current, peak
}

func (p *proc) allocs() (mallocs, bytes uint64) {
	resp, err := http.Get("http://" + p.addr + "/debug/benchstats")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	var s map[string]uint64
	_ = json.NewDecoder(resp.Body).Decode(&s)
	return s["mallocs"], s["bytes"]
}

type side struct {
	name  string
	url   string
	model string
	extra http.Header // headers the direct side needs (the key the gateway injects)
}

func chatBody(model string, stream bool) []byte {
	return []byte(`{"model":"` + model + `","stream":` + strconv.FormatBool(stream) +
		`,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Write one sentence about Kubernetes operators."}],"max_tokens":64}`)
}

type result struct {
	requests  int
	errors    int
	seconds   float64
	latencies []time.Duration
}

func (r result) throughput() float64 { return float64(r.requests-r.errors) / r.seconds }

func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

// attack sends chat requests at a fixed rate (or as fast as possible with rate 0).
func attack(s side, perSecond int, d time.Duration) result {
	header := http.Header{"Content-Type": {"application/json"}}
	for k, v := range s.extra {
		header[k] = v
	}
	tr := vegeta.NewStaticTargeter(vegeta.Target{Method: "POST", URL: s.url, Body: chatBody(s.model, false), Header: header})
	opts := []func(*vegeta.Attacker){vegeta.KeepAlive(true), vegeta.Timeout(30 * time.Second), vegeta.Connections(*workers * 2)}
	pacer := vegeta.Rate{Freq: perSecond, Per: time.Second}
	if perSecond == 0 {
		opts = append(opts, vegeta.Workers(uint64(*workers)), vegeta.MaxWorkers(uint64(*workers)))
	} else {
		opts = append(opts, vegeta.Workers(32))
	}
	atk := vegeta.NewAttacker(opts...)
	var r result
	start := time.Now()
	for res := range atk.Attack(tr, pacer, d, s.name) {
		r.requests++
		if res.Code != http.StatusOK {
			r.errors++
			continue
		}
		r.latencies = append(r.latencies, res.Latency)
	}
	r.seconds = time.Since(start).Seconds()
	return r
}

type streamResult struct {
	ttfc, gaps []time.Duration
	errors     int
}

// streamLoad opens n streams, 16 at a time, and records the time to the first chunk and the
// gaps between chunks as the client sees them.
func streamLoad(s side, n int) streamResult {
	var (
		mu  sync.Mutex
		out streamResult
		wg  sync.WaitGroup
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	jobs := make(chan struct{})
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				ttfc, gaps, err := oneStream(client, s)
				mu.Lock()
				if err != nil {
					out.errors++
				} else {
					out.ttfc = append(out.ttfc, ttfc)
					out.gaps = append(out.gaps, gaps...)
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return out
}

func oneStream(client *http.Client, s side) (time.Duration, []time.Duration, error) {
	req, err := http.NewRequestWithContext(context.Background(), "POST", s.url, bytes.NewReader(chatBody(s.model, true)))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sim-Chunks", strconv.Itoa(*chunks))
	req.Header.Set("X-Sim-Chunk-Delay", chunkDelay.String())
	for k, v := range s.extra {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return 0, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var (
		ttfc time.Duration
		gaps []time.Duration
		last time.Time
	)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("data: {")) {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			ttfc = now.Sub(start)
		} else {
			gaps = append(gaps, now.Sub(last))
		}
		last = now
	}
	return ttfc, gaps, sc.Err()
}

func orchestrate() error {
	sim, err := start("-role", "simulator")
	if err != nil {
		return err
	}
	defer sim.stop()
	gw, err := start("-role", "gateway", "-upstream", "http://"+sim.addr)
	if err != nil {
		return err
	}
	defer gw.stop()

	bare, err := start("-role", "bare", "-upstream", "http://"+sim.addr)
	if err != nil {
		return err
	}
	defer bare.stop()

	direct := side{name: "direct", url: "http://" + sim.addr + "/v1/chat/completions", model: served,
		extra: http.Header{"Authorization": {"Bearer bench-key"}}}
	through := side{name: "gateway", url: "http://" + gw.addr + gateway.Prefix + "bench/openai/-/v1/chat/completions", model: "bench/llama"}
	plain := side{name: "bare", url: "http://" + bare.addr + "/v1/chat/completions", model: served,
		extra: http.Header{"Authorization": {"Bearer bench-key"}}}

	log := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "[bench] "+format+"\n", args...) }
	log("warming up")
	attack(direct, 0, 2*time.Second)
	attack(through, 0, 2*time.Second)

	// Saturation: each side twice, alternating, so that drift affects both alike.
	var satD, satG, satB []float64
	var gwSatCPU, gwSatReqs time.Duration
	for i := 0; i < 2; i++ {
		log("saturation round %d: direct", i+1)
		satD = append(satD, attack(direct, 0, *duration).throughput())
		log("saturation round %d: gateway", i+1)
		c0 := gw.cpu()
		r := attack(through, 0, *duration)
		gwSatCPU += gw.cpu() - c0
		gwSatReqs += time.Duration(r.requests)
		satG = append(satG, r.throughput())
		log("saturation round %d: bare ReverseProxy", i+1)
		satB = append(satB, attack(plain, 0, *duration).throughput())
	}
	sd, sg, sb := mean(satD), mean(satG), mean(satB)

	log("fixed rate %d/s: direct", *rate)
	simCPU0 := sim.cpu()
	fixedD := attack(direct, *rate, *duration)
	simCPUPerReq := (sim.cpu() - simCPU0) / time.Duration(max(fixedD.requests, 1))

	log("fixed rate %d/s: gateway", *rate)
	if *profile != "" {
		go saveProfile("http://"+gw.addr+"/debug/pprof/profile?seconds="+strconv.Itoa(int(duration.Seconds()-1)), *profile)
	}
	cpu0 := gw.cpu()
	m0, b0 := gw.allocs()
	fixedG := attack(through, *rate, *duration)
	m1, b1 := gw.allocs()
	gwCPUPerReq := (gw.cpu() - cpu0) / time.Duration(max(fixedG.requests, 1))
	allocsPerReq := float64(m1-m0-1) / float64(max(fixedG.requests, 1)) // -1: the stats call itself is negligible
	bytesPerReq := float64(b1-b0) / float64(max(fixedG.requests, 1))

	log("fixed rate %d/s: bare ReverseProxy", *rate)
	bareCPU0 := bare.cpu()
	fixedB := attack(plain, *rate, *duration)
	bareCPUPerReq := (bare.cpu() - bareCPU0) / time.Duration(max(fixedB.requests, 1))

	log("streams: direct")
	stD := streamLoad(direct, *streams)
	log("streams: gateway")
	stG := streamLoad(through, *streams)
	rss, peak := gw.rss()

	p := func(ds []time.Duration, q float64) time.Duration { return percentile(ds, q) }
	fmt.Printf("## Gateway benchmark\n\n")
	fmt.Printf("`make bench-gateway` on %d CPUs (%s), Go %s; load generator, simulator and gateway share the machine. Phases of %s.\n\n",
		runtime.NumCPU(), cpuModel(), strings.TrimPrefix(runtime.Version(), "go"), *duration)
	fmt.Printf("| figure | direct | through the gateway | gateway − direct | ratio |\n|---|---|---|---|---|\n")
	fmt.Printf("| saturation throughput, non-streaming chat (%d connections) | %.0f req/s | %.0f req/s | | %.2f |\n", *workers, sd, sg, sg/sd)
	fmt.Printf("| latency p50 at %d req/s | %s | %s | %s | |\n", *rate, us(p(fixedD.latencies, .5)), us(p(fixedG.latencies, .5)), us(p(fixedG.latencies, .5)-p(fixedD.latencies, .5)))
	fmt.Printf("| latency p99 at %d req/s | %s | %s | %s | |\n", *rate, us(p(fixedD.latencies, .99)), us(p(fixedG.latencies, .99)), us(p(fixedG.latencies, .99)-p(fixedD.latencies, .99)))
	fmt.Printf("| errors at %d req/s | %d of %d | %d of %d | | |\n", *rate, fixedD.errors, fixedD.requests, fixedG.errors, fixedG.requests)
	fmt.Printf("| *reference: bare `httputil.ReverseProxy`* saturation | | %.0f req/s | | %.2f |\n", sb, sb/sd)
	fmt.Printf("| *reference: bare `httputil.ReverseProxy`* latency p50 / p99 at %d req/s | | %s / %s | %s / %s | |\n", *rate,
		us(p(fixedB.latencies, .5)), us(p(fixedB.latencies, .99)), us(p(fixedB.latencies, .5)-p(fixedD.latencies, .5)), us(p(fixedB.latencies, .99)-p(fixedD.latencies, .99)))
	fmt.Printf("| stream time to first chunk p50 | %s | %s | %s | |\n", us(p(stD.ttfc, .5)), us(p(stG.ttfc, .5)), us(p(stG.ttfc, .5)-p(stD.ttfc, .5)))
	fmt.Printf("| stream time to first chunk p99 | %s | %s | %s | |\n", us(p(stD.ttfc, .99)), us(p(stG.ttfc, .99)), us(p(stG.ttfc, .99)-p(stD.ttfc, .99)))
	fmt.Printf("| stream inter-chunk gap p50 (upstream pauses %s) | %s | %s | %s | |\n", chunkDelay, us(p(stD.gaps, .5)), us(p(stG.gaps, .5)), us(p(stG.gaps, .5)-p(stD.gaps, .5)))
	fmt.Printf("| stream inter-chunk gap p99 | %s | %s | %s | |\n", us(p(stD.gaps, .99)), us(p(stG.gaps, .99)), us(p(stG.gaps, .99)-p(stD.gaps, .99)))
	fmt.Printf("| stream errors | %d of %d | %d of %d | | |\n\n", stD.errors, *streams, stG.errors, *streams)
	fmt.Printf("| gateway process, at %d req/s | value |\n|---|---|\n", *rate)
	fmt.Printf("| CPU time per non-streaming request | %s (bare ReverseProxy: %s; the simulator: %s) |\n", us(gwCPUPerReq), us(bareCPUPerReq), us(simCPUPerReq))
	fmt.Printf("| CPU time per request at saturation | %s |\n", us(gwSatCPU/max(gwSatReqs, 1)))
	fmt.Printf("| allocations per request | %.0f (%.1f KiB) |\n", allocsPerReq, bytesPerReq/1024)
	fmt.Printf("| RSS after the run (peak) | %.1f MiB (%.1f MiB) |\n", float64(rss)/1024, float64(peak)/1024)
	if *traced {
		if err := compareTracing(sim, gw, through, log); err != nil {
			return err
		}
	}
	if !*auth {
		return nil
	}
	log("authentication: starting an API server")
	return compareAuth(sim, gw, through, log)
}

// compareTracing measures the gateway with every request traced and its spans exported over
// OTLP/HTTP (to a loopback sink that answers as a collector does and keeps nothing) against the
// same gateway without tracing.
func compareTracing(sim, gw *proc, off side, log func(string, ...any)) error {
	var spans, exports atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		exports.Add(1)
		spans.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer sink.Close()
	traced, err := startWithEnv([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + sink.URL, "OTEL_TRACES_SAMPLER=always_on"},
		"-role", "gateway-traced", "-upstream", "http://"+sim.addr)
	if err != nil {
		return err
	}
	defer traced.stop()
	off.name = "tracing off"
	on := side{name: "tracing on", url: "http://" + traced.addr + gateway.Prefix + "bench/openai/-/v1/chat/completions", model: "bench/llama"}
	log("tracing: warming up")
	if r := attack(on, 0, 2*time.Second); r.errors > 0 {
		return fmt.Errorf("%d of %d traced requests failed", r.errors, r.requests)
	}
	err = compare(log, "tracing", *tracingRounds, [2]side{off, on}, [2]*proc{gw, traced}, [2]string{}, func() {
		fmt.Printf("\n### Tracing: on against off\n\n")
		fmt.Printf("The same gateway without a tracer provider, and with the manager's (`OTEL_EXPORTER_OTLP_ENDPOINT` set, "+
			"`OTEL_TRACES_SAMPLER=always_on`: a server span and a client span for every request, batched and exported over OTLP/HTTP "+
			"to a loopback sink), %d alternating rounds of each phase.\n\n", *tracingRounds)
	})
	if err != nil {
		return err
	}
	fmt.Printf("\nThe sink received %d exports (%.1f MiB of spans).\n", exports.Load(), float64(spans.Load())/(1<<20))
	return nil
}

// compareAuth measures the gateway with --gateway-auth=kubernetes (TokenReview and
// SubjectAccessReview answers cached, as they are for a caller's every request but the first
// in a TTL) against the same gateway without authentication, in alternating rounds.
func compareAuth(sim, gw *proc, off side, log func(string, ...any)) error {
	env, err := testenv.Start(testenv.Options{WithoutCRDs: true})
	if err != nil {
		return fmt.Errorf("%w (run make bench-gateway, or -auth=false)", err)
	}
	defer func() { _ = env.Stop() }()
	dir, err := os.MkdirTemp("", "benchgateway-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig, err := testenv.WriteKubeconfig(env, dir)
	if err != nil {
		return err
	}
	token, err := callerToken(env.Config)
	if err != nil {
		return err
	}
	authGW, err := start("-role", "gateway-auth", "-upstream", "http://"+sim.addr, "-auth-kubeconfig", kubeconfig)
	if err != nil {
		return err
	}
	defer authGW.stop()
	// Both sides get the same request, token included: an OpenAI SDK always sends its api_key,
	// and a gateway without authentication drops it. The difference is what checking it costs.
	withToken := http.Header{"Authorization": {"Bearer " + token}}
	off.name, off.extra = "gateway (auth none)", withToken
	on := side{name: "gateway (auth kubernetes)", url: "http://" + authGW.addr + gateway.Prefix + "bench/openai/-/v1/chat/completions", model: "bench/llama",
		extra: withToken}
	log("authentication: warming up (the first request of the token reviews it)")
	if r := attack(on, 0, 2*time.Second); r.errors > 0 {
		return fmt.Errorf("%d of %d requests with the token failed", r.errors, r.requests)
	}
	var profiles [2]string
	if *authProf != "" {
		profiles = [2]string{*authProf + ".none", *authProf + ".kubernetes"}
	}
	return compare(log, "authentication", *authRounds, [2]side{off, on}, [2]*proc{gw, authGW}, profiles, func() {
		fmt.Printf("\n### Authentication: --gateway-auth=kubernetes against none\n\n")
		fmt.Printf("The same gateway with and without authentication (TokenReview and SubjectAccessReview answers cached), "+
			"the same requests with the same %d-byte token, %d alternating rounds of each phase; a local kube-apiserver and etcd share the machine.\n\n",
			len(token), *authRounds)
	})
}

// compare measures two gateways in alternating rounds of saturation and of a fixed rate, and
// prints a table of the figures of the second against the first after heading. Where profiles
// names files, it saves a CPU profile of each gateway during its first saturation phase.
func compare(log func(string, ...any), what string, rounds int, sides [2]side, procs [2]*proc, profiles [2]string, heading func()) error {
	type measured struct {
		sat       []float64
		latencies []time.Duration
		cpu       time.Duration
		requests  int
		mallocs   uint64
		errors    int
		// at saturation
		satCPU      time.Duration
		satRequests int
	}
	var m [2]measured
	for round := 0; round < rounds; round++ {
		// Each round swaps which side goes first, so that drift falls on both alike.
		order := []int{0, 1}
		if round%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			log("%s round %d: saturation, %s", what, round+1, sides[i].name)
			if profiles[i] != "" && round == 0 {
				go saveProfile("http://"+procs[i].addr+"/debug/pprof/profile?seconds="+strconv.Itoa(int(duration.Seconds()-1)), profiles[i])
			}
			cpu0 := procs[i].cpu()
			r := attack(sides[i], 0, *duration)
			m[i].satCPU += procs[i].cpu() - cpu0
			m[i].satRequests += r.requests
			m[i].sat = append(m[i].sat, r.throughput())
		}
		for _, i := range order {
			log("%s round %d: fixed rate %d/s, %s", what, round+1, *rate, sides[i].name)
			cpu0 := procs[i].cpu()
			m0, _ := procs[i].allocs()
			r := attack(sides[i], *rate, *duration)
			m1, _ := procs[i].allocs()
			m[i].cpu += procs[i].cpu() - cpu0
			m[i].mallocs += m1 - m0
			m[i].requests += r.requests
			m[i].errors += r.errors
			m[i].latencies = append(m[i].latencies, r.latencies...)
		}
	}
	p := func(i int, q float64) time.Duration { return percentile(m[i].latencies, q) }
	perReq := func(i int) time.Duration { return m[i].cpu / time.Duration(max(m[i].requests, 1)) }
	allocs := func(i int) float64 { return float64(m[i].mallocs) / float64(max(m[i].requests, 1)) }
	heading()
	fmt.Printf("| figure | %s | %s | difference | ratio |\n|---|---|---|---|---|\n", sides[0].name, sides[1].name)
	ratios := make([]float64, len(m[0].sat))
	for i := range ratios {
		ratios[i] = m[1].sat[i] / m[0].sat[i]
	}
	fmt.Printf("| saturation throughput (%d connections) | %.0f req/s | %.0f req/s | | %.2f (rounds %.2f to %.2f) |\n", *workers,
		mean(m[0].sat), mean(m[1].sat), mean(m[1].sat)/mean(m[0].sat), slices.Min(ratios), slices.Max(ratios))
	fmt.Printf("| latency p50 at %d req/s | %s | %s | %s | |\n", *rate, us(p(0, .5)), us(p(1, .5)), us(p(1, .5)-p(0, .5)))
	fmt.Printf("| latency p99 at %d req/s | %s | %s | %s | |\n", *rate, us(p(0, .99)), us(p(1, .99)), us(p(1, .99)-p(0, .99)))
	fmt.Printf("| gateway CPU time per request at %d req/s | %s | %s | %s | |\n", *rate, us(perReq(0)), us(perReq(1)), us(perReq(1)-perReq(0)))
	satPerReq := func(i int) time.Duration { return m[i].satCPU / time.Duration(max(m[i].satRequests, 1)) }
	fmt.Printf("| gateway CPU time per request at saturation | %s | %s | %s | %.2f |\n", us(satPerReq(0)), us(satPerReq(1)), us(satPerReq(1)-satPerReq(0)),
		float64(satPerReq(1))/float64(satPerReq(0)))
	fmt.Printf("| allocations per request | %.0f | %.0f | %.0f | |\n", allocs(0), allocs(1), allocs(1)-allocs(0))
	fmt.Printf("| errors at %d req/s | %d of %d | %d of %d | | |\n", *rate, m[0].errors, m[0].requests, m[1].errors, m[1].requests)
	return nil
}

// callerToken creates ServiceAccount bench/caller, lets it call the models of bench, and
// returns a token for it from the TokenRequest API.
func callerToken(cfg *rest.Config) (string, error) {
	ctx := context.Background()
	token, err := testenv.ServiceAccountToken(ctx, cfg, "bench", "caller")
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	meta := metav1.ObjectMeta{Name: "caller", Namespace: "bench"}
	if _, err := cs.RbacV1().Roles("bench").Create(ctx, &rbacv1.Role{ObjectMeta: meta, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"inference.infergate.dev"}, Resources: []string{"modelentities/proxy"}, Verbs: []string{"create"}}}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := cs.RbacV1().RoleBindings("bench").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta,
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "caller"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "caller", Namespace: "bench"}}}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	return token, nil
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func us(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	for _, line := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return runtime.GOARCH
}

func saveProfile(url, path string) {
	resp, err := http.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profile:", err)
		return
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}
