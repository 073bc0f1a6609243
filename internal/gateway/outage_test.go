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
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testutil"
)

// failing is an upstream that, while failing is set, answers as it was built to: 429 with
// Retry-After, 503, or a reset connection; and counts the requests it receives.
type failing struct {
	url      string
	failing  atomic.Bool
	requests atomic.Int64
}

func newFailing(t *testing.T, how string) *failing {
	t.Helper()
	f := &failing{}
	f.failing.Store(true)
	sim := simulator.New(simulator.Options{Name: how, Models: []string{served}})
	f.url = httpServer(t, func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		if !f.failing.Load() {
			sim.ServeHTTP(w, r)
			return
		}
		switch how {
		case "429":
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`, http.StatusTooManyRequests)
		case "429 without Retry-After":
			http.Error(w, `{"error":{"message":"quota exceeded","type":"rate_limit_error"}}`, http.StatusTooManyRequests)
		case "503":
			http.Error(w, `{"error":{"message":"overloaded","type":"server_error"}}`, http.StatusServiceUnavailable)
		case "reset":
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
		}
	})
	return f
}

// Every provider of an entity fails for a while (429 with Retry-After, 503, resets), then one
// recovers (issue 13's second scenario, in process). Clients get the providers' own answers,
// no request is tried on more providers than its attempt budget, and service resumes at once
// when one provider recovers, the others still failing.
func TestAllProvidersFailThenOneRecovers(t *testing.T) {
	ups := map[string]*failing{"limited": newFailing(t, "429"), "quota": newFailing(t, "429 without Retry-After"),
		"overloaded": newFailing(t, "503"), "resetting": newFailing(t, "reset")}
	llama := entity("team", "llama")
	spec := routing.Spec{}
	for name, f := range ups {
		spec.Providers = append(spec.Providers, provider("team", name, f.url))
		llama.Backends = append(llama.Backends, backend("team", name, served))
	}
	llama.RetryOn = routing.RetryReset // a lost connection may be retried for this entity
	spec.Entities = []routing.EntitySpec{llama}
	g := newGateway(t, spec, gateway.Options{})
	upstreamRequests := func() (n int64) {
		for _, f := range ups {
			n += f.requests.Load()
		}
		return n
	}
	chat := func(i int) *http.Response {
		resp, _ := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions",
			fmt.Sprintf(`{"model":"llama","messages":[{"role":"user","content":"request %d"}]}`, i), nil)
		return resp
	}

	statuses := map[int]int{}
	requests := testutil.ChaosSize(60, 600)
	withRetryAfter := 0
	for i := range requests {
		resp := chat(i)
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "" {
			withRetryAfter++
		}
	}
	attempts := upstreamRequests()
	t.Logf("while every provider fails: %v, %d upstream requests for %d", statuses, upstreamRequests(), requests)
	if statuses[http.StatusOK] != 0 || statuses[http.StatusTooManyRequests]+statuses[http.StatusServiceUnavailable]+statuses[http.StatusBadGateway] != requests {
		t.Errorf("while every provider fails, clients got %v; want only the providers' 429 and 503 and 502 for resets", statuses)
	}
	if n := attempts; n > int64(gateway.DefaultMaxAttempts*requests) {
		t.Errorf("%d upstream requests for %d client requests: more than %d attempts each", n, requests, gateway.DefaultMaxAttempts)
	}

	// One recovers while the others keep failing, all of them ejected by now. With every
	// provider ejected, each attempt goes to the one that failed longest ago: a request may
	// still spend its budget on failing ones, but the recovered provider is reached within
	// ceil(providers/budget) requests, and from then on nothing fails.
	ups["overloaded"].failing.Store(false)
	recovered := time.Now()
	failures, firstOK, resumed := 0, -1, time.Duration(0)
	for i := range requests {
		resp := chat(requests + i)
		switch {
		case resp.StatusCode != http.StatusOK:
			failures++
			if firstOK >= 0 {
				t.Errorf("request %d failed with %d after the recovered provider had answered", i, resp.StatusCode)
			}
		case firstOK < 0:
			firstOK, resumed = i, time.Since(recovered)
		}
	}
	failed := map[string]int{}
	for code, n := range statuses {
		if code != http.StatusOK {
			failed[strconv.Itoa(code)] = n
		}
	}
	failed["failed after the recovery"] = failures
	testutil.ReportChaos(t, testutil.ChaosRow{Scenario: "2. every provider of an entity fails (429 with and without Retry-After, 503, resets), then one recovers",
		Sent: 2 * requests, Succeeded: statuses[http.StatusOK] + requests - failures, Failed: failed,
		Figure: fmt.Sprintf("while all fail: the providers' own answers, %d of %d 429s with their Retry-After, %.2f upstream attempts per request (budget %d); after one of 4 recovers: %d failed before one reached it, %s after, none since",
			withRetryAfter, statuses[http.StatusTooManyRequests], float64(attempts)/float64(requests), gateway.DefaultMaxAttempts, failures, resumed.Round(time.Microsecond))})
	if budget := gateway.DefaultMaxAttempts; firstOK < 0 || firstOK >= (len(ups)+budget-1)/budget {
		t.Errorf("the first request to succeed after the recovery was number %d; want one of the first %d", firstOK, (len(ups)+budget-1)/budget)
	}
}
