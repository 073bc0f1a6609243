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

package simulator

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are what vLLM serves on /metrics, under vLLM's names, so that whatever reads a vLLM
// server (the gateway's scraper, dashboards) reads the simulator the same way.
type metrics struct {
	handler          http.Handler
	promptTokens     prometheus.Counter
	generationTokens prometheus.Counter
	cacheQueries     prometheus.Counter
	cacheHits        prometheus.Counter
	succeeded        prometheus.Counter
	ttft             prometheus.Histogram
	e2e              prometheus.Histogram
}

func newMetrics(e *engine, model string) *metrics {
	reg := prometheus.NewRegistry()
	labels := prometheus.Labels{"model_name": model}
	gauge := func(name, help string, value func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, value)
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
		reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: labels, Buckets: buckets})
		reg.MustRegister(h)
		return h
	}
	reg.MustRegister(
		gauge("vllm:num_requests_running", "Number of requests in model execution batches.", func() float64 {
			running, _, _ := e.state()
			return float64(running)
		}),
		gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", func() float64 {
			_, waiting, _ := e.state()
			return float64(waiting)
		}),
		gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", func() float64 {
			_, _, usage := e.state()
			return usage
		}),
	)
	latency := []float64{0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80}
	return &metrics{
		handler:          promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		promptTokens:     counter("vllm:prompt_tokens_total", "Number of prefill tokens processed."),
		generationTokens: counter("vllm:generation_tokens_total", "Number of generation tokens processed."),
		cacheQueries:     counter("vllm:prefix_cache_queries_total", "Prefix cache queries, in terms of number of queried tokens."),
		cacheHits:        counter("vllm:prefix_cache_hits_total", "Prefix cache hits, in terms of number of cached tokens."),
		succeeded:        counter("vllm:request_success_total", "Count of successfully processed requests."),
		ttft:             histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", latency),
		e2e:              histogram("vllm:e2e_request_latency_seconds", "Histogram of end to end request latency in seconds.", latency),
	}
}
