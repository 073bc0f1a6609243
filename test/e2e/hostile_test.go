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
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
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

// Slow and hostile clients (issue 13's sixth scenario): thousands of connections that send
// nothing, clients that send their headers or body a byte a second, clients that read a large
// stream slowly, headers and bodies past the limits. The limits are the manager's flags, set
// low here. Well-behaved clients call on throughout: none of their requests fails; their
// latency before and during, and the manager's memory, are reported. The assertions are on
// counts and on memory staying within a bound far below what buffering the streams would take.
func TestSlowAndHostileClients(t *testing.T) {
	const (
		headerTimeout = 5 * time.Second
		bodyTimeout   = 5 * time.Second
		maxHeader     = 64 << 10
		maxBody       = 1 << 20
	)
	c := startCluster(t, "--log-level", "info",
		"--gateway-read-header-timeout", headerTimeout.String(), "--gateway-body-read-timeout", bodyTimeout.String(),
		"--gateway-max-header-bytes", fmt.Sprint(maxHeader), "--gateway-max-body-bytes", fmt.Sprint(maxBody))
	c.serveLlama([]string{"sim"}, "", "")
	gw := strings.TrimPrefix(c.gateway, "http://")
	chatPath := "/apis/inference-gateway/v2/workspaces/team/openai/-/v1/chat/completions"

	var (
		idle        = testutil.ChaosSize(300, 5000)
		slowSenders = testutil.ChaosSize(10, 100)
		slowReaders = testutil.ChaosSize(2, 20)
		phase       = testutil.ChaosSize(3*time.Second, 20*time.Second)
	)

	// The manager's usage, every second.
	var samplesMu sync.Mutex
	var samples []usage
	sampling, stopSampling := context.WithCancel(context.Background())
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for tick := time.NewTicker(time.Second); ; {
			u, err := sampleUsage(c.manager)
			if err != nil {
				t.Error(err)
				return
			}
			samplesMu.Lock()
			samples = append(samples, u)
			samplesMu.Unlock()
			select {
			case <-sampling.Done():
				return
			case <-tick.C:
			}
		}
	})

	// Well-behaved clients: short non-streaming answers, timed.
	polite := openai.NewClient(option.WithBaseURL(c.gateway+"/apis/inference-gateway/v2/workspaces/team/openai/-/v1/"),
		option.WithAPIKey(c.token), option.WithMaxRetries(0),
		option.WithHeader("X-Sim-Chunks", "4"), option.WithHeader("X-Sim-Chunk-Delay", "0s"))
	measure := func(d time.Duration) (took []time.Duration, failed int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		deadline := time.Now().Add(d)
		for range 4 {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					start := time.Now()
					_, err := polite.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "llama",
						Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hello")}})
					mu.Lock()
					if err != nil {
						failed++
						t.Logf("a well-behaved request failed: %v", err)
					} else {
						took = append(took, time.Since(start))
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return took, failed
	}
	before, failedBefore := measure(phase)
	baseline := usageOf(t, c.manager)

	var attacks sync.WaitGroup
	attacking, stopAttacking := context.WithCancel(context.Background())

	// Each attacker below repeats its attack until the attacks stop: a round is one connection.
	type attack struct{ rounds, refused atomic.Int32 } // refused: the gateway stopped it
	repeat := func(a *attack, round func() bool) {
		attacks.Go(func() {
			for attacking.Err() == nil {
				a.rounds.Add(1)
				if round() {
					a.refused.Add(1)
				}
			}
		})
	}
	var idleConns, slowHeaders, slowBodies attack

	// Connections that send nothing: the gateway closes each at its read header timeout.
	var longestIdle atomic.Int64
	for range idle {
		repeat(&idleConns, func() bool {
			conn, err := net.DialTimeout("tcp", gw, 10*time.Second)
			if err != nil {
				t.Logf("dial: %v", err)
				return false
			}
			defer conn.Close()
			opened := time.Now()
			_ = conn.SetReadDeadline(time.Now().Add(headerTimeout + 30*time.Second))
			if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
				return false
			}
			for d := int64(time.Since(opened)); ; {
				if l := longestIdle.Load(); d <= l || longestIdle.CompareAndSwap(l, d) {
					break
				}
			}
			return true
		})
	}

	// Headers a byte a second: closed at the read header timeout too.
	for range slowSenders {
		repeat(&slowHeaders, func() bool {
			conn, err := net.Dial("tcp", gw)
			if err != nil {
				return false
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, "POST "+chatPath+" HTTP/1.1\r\nHost: gateway\r\nX-Slow: "); err != nil {
				return false
			}
			for deadline := time.Now().Add(headerTimeout + 30*time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
				if _, err := io.WriteString(conn, "a"); err != nil {
					return true
				}
				_ = conn.SetReadDeadline(time.Now().Add(time.Millisecond))
				if _, err := conn.Read(make([]byte, 1)); err == io.EOF {
					return true
				}
			}
			return false
		})
	}

	// Bodies a byte a second: 408 at the body read timeout.
	for range slowSenders {
		repeat(&slowBodies, func() bool {
			conn, err := net.Dial("tcp", gw)
			if err != nil {
				return false
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", chatPath, c.token)
			answered := make(chan int, 1)
			go func() {
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					answered <- 0
					return
				}
				resp.Body.Close()
				answered <- resp.StatusCode
			}()
			for {
				select {
				case code := <-answered:
					return code == http.StatusRequestTimeout
				case <-time.After(time.Second):
					if _, err := io.WriteString(conn, " "); err != nil {
						return false
					}
				}
			}
		})
	}

	// Large streams read slowly, through small socket buffers: the gateway must hold back, not
	// read the whole stream into memory.
	var slowRead atomic.Int64
	for range slowReaders {
		attacks.Go(func() {
			conn, err := net.Dial("tcp", gw)
			if err != nil {
				return
			}
			defer conn.Close()
			_ = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
			body := `{"model":"llama","stream":true,"messages":[{"role":"user","content":"Tell me everything"}]}`
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nX-Sim-Chunks: 1000000\r\nX-Sim-Chunk-Delay: 0s\r\nContent-Length: %d\r\n\r\n%s",
				chatPath, c.token, len(body), body)
			buf := make([]byte, 1<<10)
			for attacking.Err() == nil {
				n, err := conn.Read(buf)
				slowRead.Add(int64(n))
				if err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}

	// Headers and bodies past the limits, in a loop.
	statuses := map[string]*atomic.Int32{"431": {}, "413": {}, "other": {}}
	count := func(code int, err error) {
		switch {
		case err == nil && code == http.StatusRequestHeaderFieldsTooLarge:
			statuses["431"].Add(1)
		case err == nil && code == http.StatusRequestEntityTooLarge:
			statuses["413"].Add(1)
		default:
			statuses["other"].Add(1)
			t.Logf("a request past the limits got %d, %v", code, err)
		}
	}
	oversized := func(header bool) {
		for attacking.Err() == nil {
			body, name := []byte(`{"model":"llama","messages":[]}`), ""
			if header {
				name = strings.Repeat("h", 2*maxHeader)
			} else {
				body = bytes.Repeat([]byte(" "), 2*maxBody)
			}
			req, _ := http.NewRequest(http.MethodPost, c.gateway+chatPath, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+c.token)
			if header {
				req.Header.Set("X-Large", name)
			}
			resp, err := http.DefaultClient.Do(req)
			code := 0
			if err == nil {
				code = resp.StatusCode
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			count(code, err)
			time.Sleep(20 * time.Millisecond)
		}
	}
	attacks.Go(func() { oversized(true) })
	attacks.Go(func() { oversized(false) })

	time.Sleep(time.Second) // let the attacks start
	during, failedDuring := measure(phase)
	stopAttacking()
	attacks.Wait()
	after, failedAfter := measure(phase)
	stopSampling()
	sampler.Wait()

	peak := baseline
	for _, u := range samples {
		if u.rss > peak.rss {
			peak.rss = u.rss
		}
		peak.goroutines = max(peak.goroutines, u.goroutines)
		peak.fds = max(peak.fds, u.fds)
	}
	end := usageOf(t, c.manager)
	t.Logf("well-behaved clients: before %s (%d), during %s (%d), after %s (%d)",
		latencies(before), len(before), latencies(during), len(during), latencies(after), len(after))
	t.Logf("manager: before %s; peak %s; after %s", baseline, peak, end)
	failed := map[string]int{}
	if n := failedBefore + failedDuring + failedAfter; n > 0 {
		failed["well-behaved"] = n
	}
	testutil.ReportChaos(t, testutil.ChaosRow{Scenario: "6. slow and hostile clients", Sent: len(before) + len(during) + len(after) + failedBefore + failedDuring + failedAfter,
		Succeeded: len(before) + len(during) + len(after), Failed: failed,
		Figure: fmt.Sprintf("well-behaved latency %s before, %s during; %d idle connections at a time: %d/%d closed by the gateway, none open past %s (--gateway-read-header-timeout %s); %d slow header senders at a time: %d/%d closed; %d slow bodies at a time: %d/%d got 408; %d oversized headers 431, %d oversized bodies 413, %d slow readers of 1M-token streams read %s; manager RSS %s before, %s peak (%d goroutines, %d fds), %s after",
			latencies(before), latencies(during), idle, idleConns.refused.Load(), idleConns.rounds.Load(), time.Duration(longestIdle.Load()).Round(100*time.Millisecond), headerTimeout,
			slowSenders, slowHeaders.refused.Load(), slowHeaders.rounds.Load(), slowSenders, slowBodies.refused.Load(), slowBodies.rounds.Load(), statuses["431"].Load(), statuses["413"].Load(),
			slowReaders, mib(uint64(slowRead.Load())), mib(baseline.rss), mib(peak.rss), peak.goroutines, peak.fds, mib(end.rss))})

	if failedBefore+failedDuring+failedAfter != 0 || len(during) == 0 {
		t.Errorf("well-behaved clients: %d, %d and %d requests failed before, during and after; %d succeeded during", failedBefore, failedDuring, failedAfter, len(during))
	}
	for name, a := range map[string]*attack{"connections that sent nothing": &idleConns, "connections sending headers a byte a second": &slowHeaders,
		"bodies sent a byte a second (408)": &slowBodies} {
		if a.rounds.Load() == 0 || a.refused.Load() != a.rounds.Load() {
			t.Errorf("the gateway stopped %d of %d %s", a.refused.Load(), a.rounds.Load(), name)
		}
	}
	if statuses["431"].Load() == 0 || statuses["413"].Load() == 0 || statuses["other"].Load() != 0 {
		t.Errorf("requests past the limits: %d got 431, %d got 413, %d something else", statuses["431"].Load(), statuses["413"].Load(), statuses["other"].Load())
	}
	// The slow readers' streams are a million tokens each: read whole into memory, they would
	// take gigabytes.
	if bound := baseline.rss + 256<<20; peak.rss > bound {
		t.Errorf("the manager's memory grew from %s to %s under slow and hostile clients", mib(baseline.rss), mib(peak.rss))
	}
}
