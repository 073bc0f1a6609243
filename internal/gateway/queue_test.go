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

package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
	"github.com/infergate/infergate/internal/simulator"
)

// sharedPool serves, for each workspace, an entity <ws>/llama on one simulated vLLM server of
// the system workspace, whose metrics the gateway reads as the manager does; every entity
// resolves to the same provider, so their requests share one queue. edit may change the
// table's spec before it is built.
func sharedPool(t *testing.T, opts simulator.Options, edit func(*routing.Spec), workspaces ...string) (*gw, *upstream) {
	t.Helper()
	opts.Models = []string{"meta/llama"}
	up := newUpstream(t, opts)
	p := provider("system", "vllm", up.srv.URL)
	p.Metrics = &routing.MetricsSpec{URL: up.srv.URL + "/metrics", Interval: 100 * time.Millisecond}
	spec := routing.Spec{Providers: []routing.ProviderSpec{p}}
	for _, ws := range workspaces {
		spec.Entities = append(spec.Entities, entity(ws, "llama", backend("system", "vllm", "meta/llama")))
	}
	if edit != nil {
		edit(&spec)
	}
	g := newGateway(t, spec, gateway.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&scrape.Scraper{Store: g.store, Client: scrape.NewClient(true)}).Start(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return g, up
}

// fill sends n long requests straight to the server, bypassing the gateway, until ctx ends,
// and waits until the gateway has seen the server queue: it then knows the server's capacity
// (what it runs while others wait) and that it is saturated.
func fill(ctx context.Context, t *testing.T, g *gw, up *upstream, n int) {
	t.Helper()
	s := &server{url: up.srv.URL}
	s.occupy(ctx, t, n)
	g.waitForReports(t, func(_ string, r routing.EngineReport) bool { return r.Waiting > 0 })
}

// streamAs streams a chat completion of <ws>/llama through the OpenAI SDK and returns its
// error; content names the request in the upstream's records.
func streamAs(ctx context.Context, g *gw, ws, content string, opts ...option.RequestOption) error {
	s := g.client(ws, opts...).Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model: "llama", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(content)},
	})
	n := 0
	for s.Next() {
		n++
	}
	if err := s.Err(); err != nil {
		return err
	}
	if n == 0 {
		return errors.New("an empty stream")
	}
	return nil
}

// arrivals returns the requests the upstream received from i on whose body holds which.
func arrivals(up *upstream, from int, which string) (n int) {
	reqs := up.sim.Requests()
	for _, r := range reqs[min(from, len(reqs)):] {
		if strings.Contains(string(r.Body), which) {
			n++
		}
	}
	return n
}

// indexOf returns the position among the upstream's requests of the one whose body holds
// which, -1 when it never came.
func indexOf(up *upstream, which string) int {
	for i, r := range up.sim.Requests() {
		if strings.Contains(string(r.Body), which) {
			return i
		}
	}
	return -1
}

func TestFloodDoesNotDelayAQuietWorkspace(t *testing.T) {
	g, up := sharedPool(t, simulator.Options{MaxNumSeqs: 2, Chunks: 5, ChunkDelay: 20 * time.Millisecond}, nil, "flood", "quiet")
	ctx, stop := context.WithCancel(context.Background())
	fill(ctx, t, g, up, 3)
	stop()
	g.waitForReports(t, idle)

	// The flood: twelve clients that send one stream after another, six times the server's
	// capacity.
	flood, stopFlood := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; flood.Err() == nil; k++ {
				_ = streamAs(flood, g, "flood", fmt.Sprintf("flood %d-%d", i, k))
			}
		}()
	}
	defer func() { stopFlood(); wg.Wait() }()
	eventually(t, 10*time.Second, func() error {
		if n := counter(t, g.reg, "infergate_gateway_queue_requests", map[string]string{"workspace": "flood"}); n < 5 {
			return fmt.Errorf("%v flood requests wait in the gateway", n)
		}
		return nil
	})

	// A quiet workspace's requests go next, not behind the flood: between one's arrival and
	// its dispatch the server receives at most the flood requests already on their way and
	// the one whose counter ties (the flood's head is older).
	for i := range 5 {
		name := fmt.Sprintf("quiet %d", i)
		before := len(up.sim.Requests())
		if err := streamAs(ctxTimeout(t, 30*time.Second), g, "quiet", name); err != nil {
			t.Fatal(err)
		}
		at := indexOf(up, name)
		if at < 0 {
			t.Fatalf("%s never reached the upstream", name)
		}
		if ahead := arrivals(up, before, "flood") - arrivals(up, at, "flood"); ahead > 3 {
			t.Errorf("%d flood requests went upstream ahead of %q; want 3 at most", ahead, name)
		}
	}
	if n := counter(t, g.reg, "infergate_gateway_queue_outcomes_total", map[string]string{"workspace": "quiet", "outcome": "dispatched"}); n == 0 {
		t.Error("no quiet request waited: the pool was not saturated and the test proves nothing")
	}
}

// apiStatus returns the status and the OpenAI error code of an SDK error, and its Retry-After.
func apiStatus(t *testing.T, err error) (int, string, string) {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("want an API error, got %v", err)
	}
	return e.StatusCode, e.Code, e.Response.Header.Get("Retry-After")
}

func TestSheddableIsShedFirst(t *testing.T) {
	maxTime, maxLength := 1500*time.Millisecond, 2
	g, up := sharedPool(t, simulator.Options{MaxNumSeqs: 1, Chunks: 2, ChunkDelay: 10 * time.Millisecond}, func(s *routing.Spec) {
		// The provider bounds the queue; the entities set their classes.
		s.Providers[0].Queue = routing.QueueSpec{MaxTime: &maxTime, MaxLength: &maxLength}
		s.Entities[0].Priority = flow.Sheddable
	}, "batch", "team")
	ctx, release := context.WithCancel(context.Background())
	defer release()
	fill(ctx, t, g, up, 2) // saturated until release

	waiting := func(ws, class string, want float64) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			if n := counter(t, g.reg, "infergate_gateway_queue_requests", map[string]string{"workspace": ws, "class": class}); n != want {
				return fmt.Errorf("%v %s requests of %s wait, want %v", n, class, ws, want)
			}
			return nil
		})
	}
	errs := make(chan error, 3)
	for i := range 2 {
		go func() { errs <- streamAs(context.Background(), g, "batch", fmt.Sprintf("batch %d", i)) }()
		waiting("batch", "Sheddable", float64(i+1))
	}
	// The queue holds two: a Standard request takes the place of the newest Sheddable one.
	go func() { errs <- streamAs(context.Background(), g, "team", "team 0") }()
	status, code, retry := apiStatus(t, <-errs)
	if status != http.StatusTooManyRequests || code != "shed" || retry == "" {
		t.Fatalf("the shed request: %d %s, Retry-After %q; want 429 shed with Retry-After", status, code, retry)
	}
	waiting("team", "Standard", 1)
	waiting("batch", "Sheddable", 1)

	// The server stays full: both wait their maximum time, then get 429 with Retry-After.
	for range 2 {
		status, code, retry := apiStatus(t, <-errs)
		if status != http.StatusTooManyRequests || code != "queue_timeout" || retry != "2" {
			t.Errorf("after %s: %d %s, Retry-After %q; want 429 queue_timeout, Retry-After 2", maxTime, status, code, retry)
		}
	}
	if n := arrivals(up, 0, "batch") + arrivals(up, 0, "team"); n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}

	// A priority the gateway does not know is refused before anything waits.
	err := streamAs(context.Background(), g, "team", "team 1", option.WithHeader(gateway.PriorityHeader, "Urgent"))
	if status, code, _ := apiStatus(t, err); status != http.StatusBadRequest || code != "invalid_priority" {
		t.Errorf("X-Infergate-Priority: Urgent: %d %s, want 400 invalid_priority", status, code)
	}

	// Once the server has room, both classes are served, and the header never goes upstream.
	release()
	g.waitForReports(t, idle)
	if err := streamAs(ctxTimeout(t, 30*time.Second), g, "batch", "batch 2", option.WithHeader(gateway.PriorityHeader, "Critical")); err != nil {
		t.Fatal(err)
	}
	if h := up.lastRequest(t).Header.Get(gateway.PriorityHeader); h != "" {
		t.Errorf("the upstream received %s: %s", gateway.PriorityHeader, h)
	}
	if err := streamAs(ctxTimeout(t, 30*time.Second), g, "team", "team 2"); err != nil {
		t.Fatal(err)
	}
}

func TestDepartingClientLeavesTheQueue(t *testing.T) {
	g, up := sharedPool(t, simulator.Options{MaxNumSeqs: 1, Chunks: 2, ChunkDelay: 10 * time.Millisecond}, nil, "team")
	ctx, release := context.WithCancel(context.Background())
	defer release()
	fill(ctx, t, g, up, 2)

	client, leave := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- streamAs(client, g, "team", "departing") }()
	eventually(t, 10*time.Second, func() error {
		if n := counter(t, g.reg, "infergate_gateway_queue_requests", map[string]string{"workspace": "team"}); n != 1 {
			return fmt.Errorf("%v requests wait", n)
		}
		return nil
	})
	leave()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("the departing client got %v", err)
	}
	eventually(t, 5*time.Second, func() error {
		if n := counter(t, g.reg, "infergate_gateway_queue_outcomes_total", map[string]string{"workspace": "team", "outcome": "left"}); n != 1 {
			return fmt.Errorf("%v requests left the queue", n)
		}
		if n := counter(t, g.reg, "infergate_gateway_queue_requests", map[string]string{"workspace": "team"}); n != 0 {
			return fmt.Errorf("%v requests still wait", n)
		}
		return nil
	})
	// Capacity frees: the request that left is not sent, the next one is.
	release()
	g.waitForReports(t, idle)
	if err := streamAs(ctxTimeout(t, 30*time.Second), g, "team", "staying"); err != nil {
		t.Fatal(err)
	}
	if indexOf(up, "departing") >= 0 {
		t.Error("the request whose client left reached the upstream")
	}
}
