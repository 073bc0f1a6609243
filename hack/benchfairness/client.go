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
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/internal/gateway"
)

// outcome is what the client saw of one request.
type outcome struct {
	ws         int
	sent       time.Duration // since the run began
	status     int           // 0 when no answer came
	ttft       time.Duration // to the first content event
	e2e        time.Duration // to the end of the answer
	tokens     int
	retryAfter time.Duration
	err        error
}

func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}
}

// priority is the header of a request's class.
func priority(class string) http.Header {
	h := http.Header{}
	h.Set(gateway.PriorityHeader, class)
	return h
}

// stream sends one streaming chat request and reads it to the end, calling onToken for each
// content event.
func stream(ctx context.Context, c *http.Client, url string, h http.Header, payload []byte, onToken func()) outcome {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return outcome{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	o := outcome{status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			o.retryAfter = time.Duration(s) * time.Second
		}
		o.err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
		return o
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok || bytes.Equal(data, []byte("[DONE]")) {
			continue
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal(data, &chunk); err != nil {
			o.err = fmt.Errorf("event %q: %w", data, err)
			return o
		}
		if len(chunk.Choices) == 0 || chunk.Choices[0].Delta.Content == "" {
			continue // the role's event, the usage's
		}
		if o.tokens == 0 {
			o.ttft = time.Since(start)
		}
		o.tokens++
		if onToken != nil {
			onToken()
		}
	}
	if err := sc.Err(); err != nil {
		o.err = err
		return o
	}
	if o.tokens == 0 {
		o.err = fmt.Errorf("a stream without tokens")
		return o
	}
	o.e2e = time.Since(start)
	return o
}

// call sends one non-streaming request and reads the answer whole.
func call(ctx context.Context, c *http.Client, url string, h http.Header, payload []byte) (time.Duration, error) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s", resp.Status)
	}
	return time.Since(start), nil
}

// prompts makes unique prompts of half to one and a half times -prompt-tokens tokens, uniformly
// (a nonce, then a slice of a random text, so that no two share a KV cache block), each with a
// max_tokens of half to one and a half times -chunks: requests end at different times, as
// they do on real servers; with one length for all, a saturated pool's slots free in waves.
type prompts struct {
	text  string
	n     atomic.Int64
	mu    sync.Mutex
	rng   *rand.Rand
	bytes int
}

func newPrompts(salt uint64) *prompts {
	rng := rand.New(rand.NewPCG(*seed, salt))
	words := []string{"the", "model", "server", "queue", "token", "share", "fair", "pool", "gateway", "request",
		"workspace", "priority", "stream", "latency", "batch", "cache", "prefill", "decode", "answer", "question"}
	var b bytes.Buffer
	for b.Len() < 256<<10 {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	return &prompts{text: b.String(), rng: rng, bytes: max(*promptToks*4, 64)}
}

// body returns a chat request of a new prompt for model.
func (p *prompts) body(model string, stream bool) []byte {
	p.mu.Lock()
	n := p.bytes/2 + p.rng.IntN(p.bytes+1)
	off := p.rng.IntN(len(p.text) - n)
	out := max(1, *chunks/2+p.rng.IntN(*chunks+1))
	p.mu.Unlock()
	nonce := fmt.Sprintf("request %d %d: ", *seed, p.n.Add(1))
	content := nonce + p.text[off:off+n-len(nonce)]
	b, _ := json.Marshal(map[string]any{
		"model":      model,
		"stream":     stream,
		"max_tokens": out,
		"messages":   []map[string]string{{"role": "user", "content": content}},
	})
	return b
}

// load is the clients of one run: what they received inside the measured window
// [from, to) of the run's clock, per workspace.
type load struct {
	start     time.Time
	from, to  time.Duration
	prompts   *prompts
	client    *http.Client
	tokens    [workspaces]atomic.Int64 // output tokens received in the window
	completed [workspaces]atomic.Int64 // requests sent in the window and answered whole
	refused   [workspaces]atomic.Int64 // 429 answers to requests sent in the window
	failed    [workspaces]atomic.Int64 // other failures of requests sent in the window
	firstErr  atomic.Pointer[error]
}

func newLoad(start time.Time, from, to time.Duration, salt uint64) *load {
	return &load{start: start, from: from, to: to, prompts: newPrompts(salt), client: newClient()}
}

func (l *load) in(t time.Duration) bool { return t >= l.from && t < l.to }

func (l *load) token(ws int) func() {
	return func() {
		if l.in(time.Since(l.start)) {
			l.tokens[ws].Add(1)
		}
	}
}

func (l *load) note(o outcome) {
	if !l.in(o.sent) {
		return
	}
	switch {
	case o.status == http.StatusTooManyRequests:
		l.refused[o.ws].Add(1)
	case o.err != nil:
		l.failed[o.ws].Add(1)
		l.firstErr.CompareAndSwap(nil, &o.err)
	default:
		l.completed[o.ws].Add(1)
	}
}

// closedLoop sends ws's requests one after the other from the run's start until ctx is done:
// the next as soon as an answer ends; after a 429, once its Retry-After has passed, as the
// OpenAI SDKs do, unless pushy: then after retryPause, whatever the gateway said.
func (l *load) closedLoop(ctx context.Context, url, model string, h http.Header, ws int, pushy bool) {
	sleep(ctx, time.Until(l.start))
	for ctx.Err() == nil {
		sent := time.Since(l.start)
		o := stream(ctx, l.client, url, h, l.prompts.body(model, true), l.token(ws))
		if ctx.Err() != nil {
			return
		}
		o.ws, o.sent = ws, sent
		l.note(o)
		switch {
		case o.status == http.StatusTooManyRequests && pushy:
			sleep(ctx, *retryPause)
		case o.status == http.StatusTooManyRequests:
			sleep(ctx, max(o.retryAfter, 100*time.Millisecond))
		case o.err != nil:
			sleep(ctx, 100*time.Millisecond)
		}
	}
}

// arrival is an open-loop request: when and from which workspace.
type arrival struct {
	at time.Duration
	ws int
}

// poissonArrivals are Poisson arrivals at rate per second of workspace ws over d.
func poissonArrivals(d time.Duration, rate float64, ws int, salt uint64) []arrival {
	rng := rand.New(rand.NewPCG(*seed, salt))
	var out []arrival
	for t := time.Duration(0); ; {
		t += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
		if t >= d {
			return out
		}
		out = append(out, arrival{at: t, ws: ws})
	}
}

// quietArrivals are the quiet workspaces' arrivals over d.
func quietArrivals(d time.Duration, salt uint64) []arrival {
	out := append(poissonArrivals(d, *quietRate, quietA, 2*salt+100), poissonArrivals(d, *quietRate, quietB, 2*salt+101)...)
	slices.SortFunc(out, func(a, b arrival) int { return int(a.at - b.at) })
	return out
}

// openLoop sends each arrival at its time, whatever became of the others, and returns their
// outcomes once every one is over (or ctx is done). urlOf gives the i-th arrival's URL.
func (l *load) openLoop(ctx context.Context, arrivals []arrival, urlOf func(i int, a arrival) string, model string, h http.Header) []outcome {
	out := make([]outcome, len(arrivals))
	var wg sync.WaitGroup
	for i, a := range arrivals {
		sleep(ctx, time.Until(l.start.Add(a.at)))
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := stream(ctx, l.client, urlOf(i, a), h, l.prompts.body(model, true), l.token(a.ws))
			o.ws, o.sent = a.ws, a.at
			l.note(o)
			out[i] = o
		}()
	}
	wg.Wait()
	return out
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// jain is Jain's fairness index of x: (Σx)² / (n Σx²), 1 when all are equal, 1/n when one
// has everything.
func jain(x []float64) float64 {
	var s, s2 float64
	for _, v := range x {
		s += v
		s2 += v * v
	}
	if s2 == 0 {
		return math.NaN()
	}
	return s * s / (float64(len(x)) * s2)
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	d = slices.Clone(d)
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}
