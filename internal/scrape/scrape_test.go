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

package scrape_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testutil"
)

const vllmMetrics = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta/llama"} 3.0
vllm:num_requests_running{engine="1",model_name="meta/llama"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta/llama"} 4.0
vllm:num_requests_waiting{engine="1",model_name="meta/llama"} 0.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta/llama"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="meta/llama"} 0.5
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{le="0.001",model_name="meta/llama"} 0.0
vllm:time_to_first_token_seconds_bucket{le="+Inf",model_name="meta/llama"} 7.0
vllm:time_to_first_token_seconds_count{model_name="meta/llama"} 7.0
vllm:time_to_first_token_seconds_sum{model_name="meta/llama"} 1.5
`

func TestParseUnderstandsEachEngine(t *testing.T) {
	for _, tc := range []struct {
		engine, text string
		want         routing.EngineReport
	}{
		// Series of data-parallel ranks add up; KV cache use is the highest.
		{"vLLM", vllmMetrics, routing.EngineReport{Running: 5, Waiting: 4, KVCacheUsage: 0.5, HasKVCacheUsage: true}},
		// vLLM before 0.10 named the KV cache gauge after the GPU.
		{"vLLM", "vllm:num_requests_running 1\nvllm:num_requests_waiting 0\nvllm:gpu_cache_usage_perc 0.75\n",
			routing.EngineReport{Running: 1, KVCacheUsage: 0.75, HasKVCacheUsage: true}},
		{"NIM", "# TYPE num_requests_running gauge\nnum_requests_running{model_name=\"m\"} 7\nnum_requests_waiting{model_name=\"m\"} 2\nnum_request_max{model_name=\"m\"} 8\ngpu_cache_usage_perc{model_name=\"m\"} 0.9\n",
			routing.EngineReport{Running: 7, Waiting: 2, MaxRunning: 8, KVCacheUsage: 0.9, HasKVCacheUsage: true}},
		{"SGLang", "sglang:num_running_reqs{model_name=\"m\"} 12\nsglang:num_queue_reqs{model_name=\"m\"} 3\nsglang:token_usage{model_name=\"m\"} 0.4\n",
			routing.EngineReport{Running: 12, Waiting: 3, KVCacheUsage: 0.4, HasKVCacheUsage: true}},
		{"TGI", "# TYPE tgi_queue_size gauge\ntgi_queue_size 6\n# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size 32\n",
			routing.EngineReport{Running: 32, Waiting: 6}},
	} {
		got, engine, err := scrape.Parse(strings.NewReader(tc.text))
		if err != nil || engine.Name != tc.engine || got != tc.want {
			t.Errorf("%s: got %+v from %s, %v; want %+v", tc.engine, got, engine.Name, err, tc.want)
		}
	}
}

func TestParseRefusesWhatItCannotRead(t *testing.T) {
	if _, _, err := scrape.Parse(strings.NewReader("go_goroutines 12\nprocess_open_fds 9\n")); !errors.Is(err, scrape.ErrUnknownMetrics) {
		t.Errorf("metrics of no engine: %v, want ErrUnknownMetrics", err)
	}
	// Only vLLM's running gauge: no queue, no report.
	if _, _, err := scrape.Parse(strings.NewReader("vllm:num_requests_running 3\n")); !errors.Is(err, scrape.ErrUnknownMetrics) {
		t.Errorf("half the gauges: %v, want ErrUnknownMetrics", err)
	}
	if _, _, err := scrape.Parse(strings.NewReader("vllm:num_requests_running{ 3\nvllm:num_requests_waiting 0\n")); err == nil || errors.Is(err, scrape.ErrUnknownMetrics) {
		t.Errorf("a broken line: %v, want a parse error", err)
	}
}

func TestFetchReadsTheSimulatorAsVLLM(t *testing.T) {
	sim := simulator.New(simulator.Options{Models: []string{"meta/llama"}, MaxNumSeqs: 4, KVCacheBlocks: 64})
	var header atomic.Pointer[http.Header]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		header.Store(&h)
		sim.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := scrape.NewClient(true)
	r, engine, err := scrape.Fetch(context.Background(), c, scrape.Target{URL: srv.URL + "/metrics", AuthHeader: "Authorization", AuthValue: "Bearer k", HopID: "hop"})
	if err != nil || engine.Name != "vLLM" || r.Running != 0 || r.Waiting != 0 || !r.HasKVCacheUsage {
		t.Fatalf("got %+v from %s, %v", r, engine.Name, err)
	}
	if h := *header.Load(); h.Get("Authorization") != "Bearer k" || h.Get("Accept") == "" {
		t.Errorf("scrape headers %v", h)
	}
}

func TestFetchErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/missing", http.NotFound)
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/metrics", http.StatusFound) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		line := []byte("vllm:num_requests_running 1\n")
		for range (9 << 20) / len(line) {
			_, _ = w.Write(line)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := scrape.NewClient(true)
	for path, want := range map[string]string{
		"/missing":   "answered 404 Not Found",
		"/elsewhere": "answered 302 Found", // redirects are not followed: the key must not travel
		"/huge":      "larger than 8 MiB",
	} {
		_, _, err := scrape.Fetch(context.Background(), c, scrape.Target{URL: srv.URL + path})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}
	// Loopback is refused unless allowed, as on the gateway.
	if _, _, err := scrape.Fetch(context.Background(), scrape.NewClient(false), scrape.Target{URL: srv.URL + "/missing"}); err == nil || strings.Contains(err.Error(), "404") {
		t.Errorf("loopback scrape with local upstreams refused: %v", err)
	}
}

func TestScraperFeedsTheProvidersAndItsGauges(t *testing.T) {
	good := httptest.NewServer(simulator.New(simulator.Options{Models: []string{"m"}, KVCacheBlocks: 64}))
	defer good.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("up 1\n")) }))
	defer bad.Close()
	interval := 100 * time.Millisecond
	spec := routing.Spec{Providers: []routing.ProviderSpec{
		{Workspace: "team", Name: "good", BaseURL: good.URL, Ready: true, Metrics: &routing.MetricsSpec{URL: good.URL + "/metrics", Interval: interval}},
		{Workspace: "team", Name: "bad", BaseURL: bad.URL, Ready: true, Metrics: &routing.MetricsSpec{URL: bad.URL + "/metrics", Interval: interval}},
		{Workspace: "team", Name: "unscraped", BaseURL: bad.URL, Ready: true},
	}}
	table, errs := routing.New(spec, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	store := routing.NewStore()
	store.Swap(table)
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = (&scrape.Scraper{Store: store, Client: scrape.NewClient(true), Registerer: reg}).Start(ctx)
	}()

	goodP, _ := table.Provider("team", "good")
	eventually(t, func() bool {
		_, at := goodP.Health.LastReport()
		return !at.IsZero() && testutil.MetricSum(t, reg, "infergate_provider_metrics_errors_total", map[string]string{"provider": "bad"}) >= 2
	})
	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"infergate_provider_metrics_up", map[string]string{"provider": "good", "engine": "vLLM"}, 1},
		{"infergate_provider_metrics_up", map[string]string{"provider": "bad"}, 0},
		{"infergate_provider_requests_running", map[string]string{"provider": "good"}, 0},
		{"infergate_provider_kv_cache_usage_ratio", map[string]string{"provider": "good"}, 0},
	} {
		if n := testutil.MetricCount(t, reg, m.name, m.labels); n != 1 {
			t.Errorf("%s%v: %d series, want 1", m.name, m.labels, n)
		} else if got := testutil.MetricSum(t, reg, m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	if n := testutil.MetricCount(t, reg, "infergate_provider_metrics_up", map[string]string{"provider": "unscraped"}); n != 0 {
		t.Error("a provider without spec.metrics is scraped")
	}
	if sig := goodP.Health.Signals(time.Now(), goodP.StaleAfter()); !sig.Reported {
		t.Error("the picker does not see the report")
	}

	// The server goes away: its report goes stale, the picker falls back to local signals and
	// the gauges of its queue disappear, never an error on the request path.
	good.Close()
	eventually(t, func() bool {
		return !goodP.Health.Signals(time.Now(), goodP.StaleAfter()).Reported &&
			testutil.MetricCount(t, reg, "infergate_provider_requests_running", map[string]string{"provider": "good"}) == 0 &&
			testutil.MetricSum(t, reg, "infergate_provider_metrics_up", map[string]string{"provider": "good"}) == 0
	})
}

func eventually(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("gave up after 10s")
		}
	}
}

// The hop id is written last: a key whose header is the hop header cannot replace it.
func TestFetchKeepsTheHopHeader(t *testing.T) {
	var hop atomic.Pointer[string]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get(egress.HopHeader)
		hop.Store(&h)
		w.WriteHeader(http.StatusLoopDetected)
	}))
	defer srv.Close()
	_, _, _ = scrape.Fetch(context.Background(), scrape.NewClient(true), scrape.Target{URL: srv.URL + "/metrics", AuthHeader: egress.HopHeader, AuthValue: "forged", HopID: "hop"})
	if h := hop.Load(); h == nil || *h != "hop" {
		t.Errorf("the scrape carried %s %v, want hop", egress.HopHeader, h)
	}
}
