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
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
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
	ups := map[string]*failing{"limited": newFailing(t, "429"), "overloaded": newFailing(t, "503"), "resetting": newFailing(t, "reset")}
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
	const requests = 60
	for i := range requests {
		resp := chat(i)
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Error("a 429 reached the client without its Retry-After")
		}
	}
	t.Logf("while every provider fails: %v, %d upstream requests for %d", statuses, upstreamRequests(), requests)
	if statuses[http.StatusOK] != 0 || statuses[http.StatusTooManyRequests]+statuses[http.StatusServiceUnavailable]+statuses[http.StatusBadGateway] != requests {
		t.Errorf("while every provider fails, clients got %v; want only the providers' 429 and 503 and 502 for resets", statuses)
	}
	if n := upstreamRequests(); n > gateway.DefaultMaxAttempts*requests {
		t.Errorf("%d upstream requests for %d client requests: more than %d attempts each", n, requests, gateway.DefaultMaxAttempts)
	}

	// One recovers while the others keep failing, all of them ejected by now.
	ups["overloaded"].failing.Store(false)
	recovered := time.Now()
	failures := 0
	for i := range requests {
		if resp := chat(requests + i); resp.StatusCode != http.StatusOK {
			failures++
		}
	}
	t.Logf("after one recovered: %d of %d requests failed, in %s", failures, requests, time.Since(recovered).Round(time.Millisecond))
	if failures != 0 {
		t.Errorf("%d of %d requests failed with a provider recovered", failures, requests)
	}
}
