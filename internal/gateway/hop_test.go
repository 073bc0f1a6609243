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
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
)

// loopingGateway serves a gateway whose providers may point back at it, and counts the
// requests that reach it.
func loopingGateway(t *testing.T, providers func(self string) []routing.ProviderSpec) (url string, arrivals *atomic.Int32) {
	t.Helper()
	arrivals = new(atomic.Int32)
	var g *gateway.Gateway
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrivals.Add(1)
		g.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	g = newGateway(t, routing.Spec{Providers: providers(front.URL)}, gateway.Options{ID: "infergate-test"}).g
	return front.URL, arrivals
}

// A Provider cannot replace the hop header with its own headers or its key, and so cannot
// hide a loop: with a header named X-Infergate-Hop in its extras, a request that comes back
// is still answered 508 at the second hop.
func TestProviderHeadersCannotHideALoop(t *testing.T) {
	forged := []routing.Header{{Name: egress.HopHeader, Value: "forged"}, {Name: "X-Request-Id", Value: "fixed"}}
	url, arrivals := loopingGateway(t, func(self string) []routing.ProviderSpec {
		extras := provider("team", "extras", self+"/")
		extras.DefaultHeaders, extras.RequiredHeaders = forged, forged
		key := provider("team", "key", self+"/")
		key.AuthHeader, key.AuthValue = "x-infergate-hop", "forged"
		return []routing.ProviderSpec{extras, key}
	})

	// The provider route to a provider whose base URL is the gateway's root nests a gateway
	// route in the trailing path: the request comes back once, and is refused there.
	resp, body := do(t, "GET", url+gateway.Prefix+"team/provider/extras/-"+gateway.Prefix+"team/provider/extras/-/v1/models", "", nil)
	if resp.StatusCode != http.StatusLoopDetected || decodeError(t, body).Error.Code != "loop_detected" {
		t.Fatalf("status %s, want 508: %s", resp.Status, body)
	}
	if n := arrivals.Load(); n != 2 {
		t.Errorf("%d requests reached the gateway, want 2 (the client's, then the looped one)", n)
	}

	// A key that would go in the hop header is never sent: the provider is not routable.
	arrivals.Store(0)
	resp, body = do(t, "GET", url+gateway.Prefix+"team/provider/key/-"+gateway.Prefix+"team/provider/key/-/v1/models", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || arrivals.Load() != 1 {
		t.Errorf("key in the hop header: %s after %d requests, want 503 after 1: %s", resp.Status, arrivals.Load(), body)
	}
}

// A request line that nests the gateway's routes more often than hops are left is refused
// before anything goes upstream, however the hop header reads: it cannot fan out into that
// many nested requests.
func TestNestedRoutesCannotFanOut(t *testing.T) {
	url, arrivals := loopingGateway(t, func(self string) []routing.ProviderSpec {
		return []routing.ProviderSpec{provider("team", "p", self+"/")}
	})
	nested := func(n int) string {
		return url + gateway.Prefix + "team/provider/p/-" + strings.Repeat(gateway.Prefix+"team/provider/p/-", n) + "/v1/models"
	}
	for _, n := range []int{egress.MaxHops, 200} {
		arrivals.Store(0)
		resp, body := do(t, "GET", nested(n), "", nil)
		if resp.StatusCode != http.StatusLoopDetected || arrivals.Load() != 1 {
			t.Errorf("%d nested routes: %s after %d requests, want 508 after 1: %s", n, resp.Status, arrivals.Load(), body)
		}
	}
	// With hops already passed, fewer nested routes are enough to be refused.
	arrivals.Store(0)
	resp, _ := do(t, "GET", nested(2), "", map[string]string{egress.HopHeader: "a,b,c,d,e,f"})
	if resp.StatusCode != http.StatusLoopDetected || arrivals.Load() != 1 {
		t.Errorf("6 hops and 2 nested routes: %s after %d requests, want 508 after 1", resp.Status, arrivals.Load())
	}
}

// The probes and /metrics answer a looped request 508 too: a Provider whose health path is
// the gateway's /healthz must not turn Ready.
func TestProbesRefuseLoops(t *testing.T) {
	g := newGateway(t, routing.Spec{}, gateway.Options{ID: "infergate-test"})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, body := do(t, "GET", g.url+path, "", map[string]string{egress.HopHeader: "infergate-test"})
		if resp.StatusCode != http.StatusLoopDetected {
			t.Errorf("%s with the gateway's own hop id: %s, want 508: %s", path, resp.Status, body)
		}
		if resp, _ := do(t, "GET", g.url+path, "", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %s", path, resp.Status)
		}
	}
}
