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
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// latencyResult is the latency phase: client-side latencies with and without a budget, and
// the store's call times as the replicas' histograms saw them.
type latencyResult struct {
	rate     float64
	duration time.Duration
	// lat are the latencies of the successful requests, by side: 0 with the budget, 1 without.
	lat    [2][]time.Duration
	errors [2]int
	first  [2]string
	store  map[string]histogram // reserve, settle
	// ping are round trips of PING to the same Redis server, one for every two requests,
	// from a client of its own: the round trip without a script.
	ping []time.Duration
	// scriptCalls and scriptTime are the server's own count and time of EVALSHA (the reserve
	// and settle scripts), from INFO commandstats.
	scriptCalls int64
	scriptTime  time.Duration
}

// The latency phase's requests: short answers at once (no pause per token), so that the
// figures are the gateway's and the budget's, not the simulator's.
const latencyTokens = "16"

// latencyPhase sends non-streaming requests at -latency-rate for -latency-duration through the
// three replicas, alternating between the workspace with a budget on Redis (a limit it never
// reaches) and the one without, so that both sides share the same moments of the run.
func latencyPhase(sims []string, addr string) (*latencyResult, error) {
	b := budget("latency", math.MaxInt64/4, false)
	reps, stop, err := startReplicas(spec(sims, b), addr)
	if err != nil {
		return nil, err
	}
	defer stop()
	rng := rand.New(rand.NewPCG(*seed, 99))
	body := []byte(fmt.Sprintf(`{"model":%q,"max_tokens":%s,"messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`,
		entity, latencyTokens, system, prompt(rng, 300)))
	hc := &http.Client{Transport: &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 1024, DisableCompression: true}}
	defer hc.CloseIdleConnections()
	urls := [2][]string{}
	for _, r := range reps {
		urls[0] = append(urls[0], r.base(workspace)+"chat/completions")
		urls[1] = append(urls[1], r.base(free)+"chat/completions")
	}
	res := &latencyResult{rate: *latencyRate, duration: *latencyDur}
	var mu sync.Mutex
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer rc.Close()
	pace := func(d time.Duration, keep bool) {
		interval := time.Duration(float64(time.Second) / *latencyRate)
		start := time.Now()
		var wg sync.WaitGroup
		for i := 0; ; i++ {
			at := start.Add(time.Duration(i) * interval)
			if at.Sub(start) >= d {
				break
			}
			time.Sleep(time.Until(at))
			side, rep := i%2, (i/2)%len(reps)
			if side == 1 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					t := time.Now()
					err := rc.Ping(context.Background()).Err()
					rtt := time.Since(t)
					if keep && err == nil {
						mu.Lock()
						res.ping = append(res.ping, rtt)
						mu.Unlock()
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat, err := post(hc, urls[side][rep], body)
				if !keep {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if res.errors[side]++; res.first[side] == "" {
						res.first[side] = err.Error()
					}
					return
				}
				res.lat[side] = append(res.lat[side], lat)
			}()
		}
		wg.Wait()
	}
	logf("latency: %.0f requests/s for %v, budget and none interleaved", *latencyRate, *latencyDur)
	pace(3*time.Second, false) // connections, the script loaded, the pools warm
	before := storeHistograms(reps)
	if err := rc.ConfigResetStat(context.Background()).Err(); err != nil {
		return nil, err
	}
	stopProfile, err := profile()
	if err != nil {
		return nil, err
	}
	pace(*latencyDur, true)
	stopProfile()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		return nil, err
	}
	res.scriptCalls, res.scriptTime = commandStats(info, "evalsha")
	res.store = map[string]histogram{}
	for op, h := range storeHistograms(reps) {
		res.store[op] = h.minus(before[op])
	}
	return res, nil
}

// commandStats returns the calls and the server's time of command cmd from INFO
// commandstats ("cmdstat_evalsha:calls=3,usec=120,usec_per_call=40.00,...").
func commandStats(info, cmd string) (calls int64, total time.Duration) {
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				calls = n
			case "usec":
				total = time.Duration(n) * time.Microsecond
			}
		}
	}
	return calls, total
}

// post sends one non-streaming chat request and reads the answer to its end.
func post(hc *http.Client, url string, body []byte) (time.Duration, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Sim-Chunks", latencyTokens)
	req.Header.Set("X-Sim-Chunk-Delay", "0s")
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(start)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %.200s", resp.Status, data)
	}
	return lat, nil
}

// histogram is a cumulative Prometheus histogram: upper bounds and counts.
type histogram struct {
	bounds []float64
	counts []uint64 // cumulative, per bound
	count  uint64
	sum    float64
}

func (h histogram) minus(o histogram) histogram {
	out := histogram{bounds: h.bounds, counts: make([]uint64, len(h.counts)), count: h.count - o.count, sum: h.sum - o.sum}
	for i := range h.counts {
		out.counts[i] = h.counts[i]
		if i < len(o.counts) {
			out.counts[i] -= o.counts[i]
		}
	}
	return out
}

// quantile estimates quantile q by linear interpolation within its bucket, as PromQL's
// histogram_quantile does.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	rank := q * float64(h.count)
	i := sort.Search(len(h.counts), func(i int) bool { return float64(h.counts[i]) >= rank })
	if i == len(h.counts) {
		return h.bounds[len(h.bounds)-1]
	}
	lo, below := 0.0, 0.0
	if i > 0 {
		lo, below = h.bounds[i-1], float64(h.counts[i-1])
	}
	in := float64(h.counts[i]) - below
	if in == 0 {
		return h.bounds[i]
	}
	return lo + (h.bounds[i]-lo)*(rank-below)/in
}

func (h histogram) mean() float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.sum / float64(h.count)
}

// storeHistograms sums infergate_budget_store_duration_seconds over the replicas, by
// operation.
func storeHistograms(reps []*replica) map[string]histogram {
	out := map[string]histogram{}
	for _, r := range reps {
		for op, h := range gatherHistograms(r.reg, "infergate_budget_store_duration_seconds", "operation") {
			sum := out[op]
			if sum.bounds == nil {
				sum = histogram{bounds: h.bounds, counts: make([]uint64, len(h.counts))}
			}
			for i := range h.counts {
				sum.counts[i] += h.counts[i]
			}
			sum.count += h.count
			sum.sum += h.sum
			out[op] = sum
		}
	}
	return out
}

func gatherHistograms(reg *prometheus.Registry, name, label string) map[string]histogram {
	out := map[string]histogram{}
	families, err := reg.Gather()
	if err != nil {
		return out
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					key = l.GetValue()
				}
			}
			ph := m.GetHistogram()
			h := histogram{count: ph.GetSampleCount(), sum: ph.GetSampleSum()}
			for _, b := range ph.GetBucket() {
				h.bounds = append(h.bounds, b.GetUpperBound())
				h.counts = append(h.counts, b.GetCumulativeCount())
			}
			out[key] = h
		}
	}
	return out
}
