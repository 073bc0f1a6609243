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

// Package scrape reads model servers' own Prometheus metrics (their queue, their batch and
// their KV cache use) on an interval, off the request path, and hands them to the providers of
// the routing table, so that every gateway replica sees the servers' global load although the
// replicas share no state.
package scrape

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/infergate/infergate/internal/routing"
)

// Engine names the metrics of one kind of model server.
type Engine struct {
	// Name is the engine as people know it.
	Name string
	// Waiting and Running are the gauges of requests queued and running.
	Waiting, Running string
	// KVCacheUsage are gauges of the KV cache in use, 0 to 1, the first present counting.
	KVCacheUsage []string
	// MaxRunning, when set, is a gauge of the most requests the server runs at once.
	MaxRunning string
}

// Engines are the model servers whose metrics are understood, in the order they are tried.
// llm-d and NIM's vLLM backend use vLLM's names; NIM serves its own without the prefix.
var Engines = []Engine{
	{Name: "vLLM", Waiting: "vllm:num_requests_waiting", Running: "vllm:num_requests_running",
		KVCacheUsage: []string{"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}},
	{Name: "NIM", Waiting: "num_requests_waiting", Running: "num_requests_running",
		KVCacheUsage: []string{"gpu_cache_usage_perc"}, MaxRunning: "num_request_max"},
	{Name: "SGLang", Waiting: "sglang:num_queue_reqs", Running: "sglang:num_running_reqs",
		KVCacheUsage: []string{"sglang:token_usage"}},
	{Name: "TGI", Waiting: "tgi_queue_size", Running: "tgi_batch_current_size"},
}

// names are the metric names any engine uses.
var names = func() map[string]bool {
	m := map[string]bool{}
	for _, e := range Engines {
		m[e.Waiting], m[e.Running] = true, true
		for _, n := range e.KVCacheUsage {
			m[n] = true
		}
		if e.MaxRunning != "" {
			m[e.MaxRunning] = true
		}
	}
	return m
}()

// ErrUnknownMetrics: the metrics hold the queue gauges of no known engine.
var ErrUnknownMetrics = errors.New("no queue metrics of a known engine (vLLM, NIM, SGLang, TGI)")

// Parse reads a Prometheus text exposition and returns the load it reports and the engine
// whose names it uses. Series of one metric are added up (several models or data-parallel
// ranks); of KV cache usage, the highest counts. Only the lines of known metrics are parsed,
// so that a large exposition (vLLM's histograms) costs little.
func Parse(r io.Reader) (routing.EngineReport, Engine, error) {
	var kept bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if line := sc.Bytes(); names[string(metricName(line))] { // no allocation for the lookup
			kept.Write(line)
			kept.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return routing.EngineReport{}, Engine{}, err
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(&kept)
	if err != nil {
		return routing.EngineReport{}, Engine{}, fmt.Errorf("parse metrics: %w", err)
	}
	for _, e := range Engines {
		waiting, okW := sum(families[e.Waiting])
		running, okR := sum(families[e.Running])
		if !okW || !okR {
			continue
		}
		r := routing.EngineReport{Waiting: waiting, Running: running}
		for _, n := range e.KVCacheUsage {
			if v, ok := highest(families[n]); ok {
				r.KVCacheUsage, r.HasKVCacheUsage = v, true
				break
			}
		}
		if e.MaxRunning != "" {
			r.MaxRunning, _ = sum(families[e.MaxRunning])
		}
		return r, e, nil
	}
	return routing.EngineReport{}, Engine{}, ErrUnknownMetrics
}

// metricName is the metric a line of the text format is about: the sample's name, or the
// name a # HELP or # TYPE line describes.
func metricName(line []byte) []byte {
	if rest, ok := bytes.CutPrefix(line, []byte("# ")); ok {
		if rest, ok = bytes.CutPrefix(rest, []byte("HELP ")); !ok {
			if rest, ok = bytes.CutPrefix(rest, []byte("TYPE ")); !ok {
				return nil
			}
		}
		line = rest
	}
	end := bytes.IndexAny(line, "{ \t")
	if end < 0 {
		end = len(line)
	}
	return line[:end]
}

func sum(f *dto.MetricFamily) (float64, bool) {
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, false
	}
	total := 0.0
	for _, m := range f.GetMetric() {
		total += value(m)
	}
	return total, true
}

func highest(f *dto.MetricFamily) (float64, bool) {
	if f == nil || len(f.GetMetric()) == 0 {
		return 0, false
	}
	top := value(f.GetMetric()[0])
	for _, m := range f.GetMetric()[1:] {
		top = max(top, value(m))
	}
	return top, true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// describe lists an engine's metrics, for messages.
func (e Engine) describe() string {
	list := []string{e.Waiting, e.Running}
	list = append(list, e.KVCacheUsage...)
	return e.Name + " (" + strings.Join(list, ", ") + ")"
}
