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
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/internal/testutil"
)

// Soak (issue 13's seventh scenario): mixed load for 10 minutes under make chaos (20 s in make
// test) through one manager to two simulator processes: calls, streams read to their end and
// streams the client drops mid-way. The manager's resident memory, goroutines and open file
// descriptors are sampled every 10 s; after a warm-up, they must not keep growing. Then 1,000
// streams are held open at once (100 in make test): the memory they take is reported, and once
// they end the goroutines come back to where they were.
func TestSoak(t *testing.T) {
	c := startCluster(t, "--log-level", "info")
	c.serveLlama([]string{"sim-a", "sim-b"}, "", "")

	var (
		duration = testutil.ChaosSize(20*time.Second, 10*time.Minute)
		every    = testutil.ChaosSize(2*time.Second, 10*time.Second)
		warmUp   = testutil.ChaosSize(6*time.Second, 2*time.Minute)
		workers  = testutil.ChaosSize(4, 16)
		streams  = testutil.ChaosSize(100, 1000)
	)
	transport := &http.Transport{MaxIdleConnsPerHost: 2 * streams}
	client := func(opts ...option.RequestOption) openai.Client {
		return openai.NewClient(append([]option.RequestOption{
			option.WithBaseURL(c.gateway + "/apis/inference-gateway/v2/workspaces/team/openai/-/v1/"),
			option.WithAPIKey(c.token), option.WithMaxRetries(0), option.WithHTTPClient(&http.Client{Transport: transport})}, opts...)...)
	}

	// Mixed load: of every four requests, a call, a stream read to its end, a stream dropped
	// after its third token, and the list of models.
	soak := client(option.WithHeader("X-Sim-Chunk-Delay", "5ms"))
	tl := newTally()
	var dropped atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	var load sync.WaitGroup
	var n atomic.Int64
	params := func(i int64) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "llama", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(fmt.Sprintf("Request %d", i))}}
	}
	for range workers {
		load.Go(func() {
			for ctx.Err() == nil {
				i := n.Add(1)
				rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				switch i % 4 {
				case 0:
					_, err := soak.Chat.Completions.New(rctx, params(i))
					tl.call(err)
				case 1:
					_, err := soak.Models.List(rctx)
					tl.call(err)
				default:
					s := soak.Chat.Completions.NewStreaming(rctx, params(i))
					got, finish := 0, ""
					for s.Next() {
						if ch := s.Current(); len(ch.Choices) > 0 {
							if ch.Choices[0].Delta.Content != "" {
								got++
							}
							if ch.Choices[0].FinishReason != "" {
								finish = ch.Choices[0].FinishReason
							}
						}
						if i%4 == 3 && got == 3 {
							break
						}
					}
					err := s.Err()
					s.Close()
					if i%4 == 3 && got == 3 {
						dropped.Add(1)
						break
					}
					tl.stream(err, got, finish, 20)
				}
				cancel()
			}
		})
	}

	var samples []usage
	start := time.Now()
	for tick := time.NewTicker(every); time.Since(start) < duration; <-tick.C {
		u := usageOf(t, c.manager)
		samples = append(samples, u)
		t.Logf("%s: %s", u.at.Sub(start).Round(time.Second), u)
	}
	stop()
	load.Wait()
	transport.CloseIdleConnections()

	// After the warm-up, the thirds of the samples: the last may not stand above the first.
	var settled []usage
	for _, u := range samples {
		if u.at.Sub(start) >= warmUp {
			settled = append(settled, u)
		}
	}
	third := len(settled) / 3
	mean := func(us []usage, of func(usage) float64) (m float64) {
		for _, u := range us {
			m += of(u)
		}
		return m / float64(len(us))
	}
	quantities := []struct {
		name  string
		of    func(usage) float64
		slack float64
		unit  func(float64) string
	}{
		{"RSS", func(u usage) float64 { return float64(u.rss) }, 8 << 20, func(v float64) string { return mib(uint64(max(v, 0))) }},
		{"goroutines", func(u usage) float64 { return float64(u.goroutines) }, 20, func(v float64) string { return fmt.Sprintf("%.0f", v) }},
		{"fds", func(u usage) float64 { return float64(u.fds) }, 10, func(v float64) string { return fmt.Sprintf("%.0f", v) }},
	}
	var figures []string
	for _, q := range quantities {
		perHour, share := growth(settled, q.of)
		first, last := mean(settled[:third], q.of), mean(settled[len(settled)-third:], q.of)
		sign := ""
		if perHour < 0 {
			sign, perHour = "-", -perHour
		}
		figures = append(figures, fmt.Sprintf("%s %s → %s (%s%s/h, %+.0f%%/h)", q.name, q.unit(first), q.unit(last), sign, q.unit(perHour), 100*share))
		if testutil.ChaosFull() && last > first*1.1+q.slack {
			t.Errorf("the manager's %s kept growing after the warm-up: %s in the first third, %s in the last", q.name, q.unit(first), q.unit(last))
		}
	}

	// 1,000 streams open at once, then gone.
	time.Sleep(time.Second)
	baseline := usageOf(t, c.manager)
	long := client(option.WithHeader("X-Sim-Chunks", "100"), option.WithHeader("X-Sim-Chunk-Delay", "100ms"))
	var open, done sync.WaitGroup
	var started, finished atomic.Int32
	open.Add(streams)
	for i := range streams {
		done.Go(func() {
			s := long.Chat.Completions.NewStreaming(context.Background(), params(int64(i)))
			first := true
			got := 0
			for s.Next() {
				if ch := s.Current(); len(ch.Choices) > 0 && ch.Choices[0].Delta.Content != "" {
					got++
					if first {
						first = false
						started.Add(1)
						open.Done()
					}
				}
			}
			if first {
				open.Done()
			}
			if s.Err() == nil && got == 100 {
				finished.Add(1)
			} else {
				t.Logf("a held stream ended with %d tokens: %v", got, s.Err())
			}
		})
	}
	open.Wait()
	held := usageOf(t, c.manager)
	done.Wait()
	transport.CloseIdleConnections()
	// The gateway keeps its upstream connections idle for 90 s, with two goroutines each: what
	// remains beside them must be what was there before at once; under make chaos, the wait
	// goes on until they have closed too.
	var back, rest usage
	var backAfter time.Duration
	ended := time.Now()
	for {
		back, backAfter = usageOf(t, c.manager), time.Since(ended)
		if rest.at.IsZero() && float64(back.goroutines-2*max(0, back.fds-baseline.fds)) <= float64(baseline.goroutines)*1.1+20 {
			rest = back
		}
		if !rest.at.IsZero() && (!testutil.ChaosFull() || float64(back.goroutines) <= float64(baseline.goroutines)*1.1+20) || backAfter > 2*time.Minute {
			break
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d streams: before %s; held open %s; after %s, %s after they ended", streams, baseline, held, back, backAfter.Round(time.Second))

	testutil.ReportChaos(t, tl.row(fmt.Sprintf("7. soak: %s of mixed load, %d clients, then %d streams held open", duration, workers, streams),
		fmt.Sprintf("%d streams dropped mid-way by their clients; after the warm-up, %s; %d streams open: RSS %s (%s before), %d goroutines (%d before), back to %d %s after they ended (idle upstream connections close after 90 s), RSS %s then; %d of %d finished",
			dropped.Load(), strings.Join(figures, "; "), streams, mib(held.rss), mib(baseline.rss), held.goroutines, baseline.goroutines,
			back.goroutines, backAfter.Round(time.Second), mib(back.rss), finished.Load(), streams)))

	if tl.failed != 0 || tl.cut != 0 || tl.refused != 0 || tl.short != 0 || tl.ok == 0 || tl.complete == 0 || dropped.Load() == 0 {
		t.Errorf("the soak's clients saw failures: %s", tl)
	}
	if int(started.Load()) != streams || int(finished.Load()) != streams {
		t.Errorf("of %d streams held open, %d started and %d finished", streams, started.Load(), finished.Load())
	}
	if rest.at.IsZero() {
		t.Errorf("the manager's goroutines did not come back after the streams ended: %d before, %d after with %d more fds", baseline.goroutines, back.goroutines, back.fds-baseline.fds)
	}
	if testutil.ChaosFull() && float64(back.goroutines) > float64(baseline.goroutines)*1.1+20 {
		t.Errorf("the manager's goroutines did not come back once its idle upstream connections closed: %d before, %d after", baseline.goroutines, back.goroutines)
	}
}
