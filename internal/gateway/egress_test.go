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
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/discovery"
	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
	"github.com/infergate/infergate/internal/simulator"
)

// A Provider whose URL leads back to the gateway is a loop: the gateway sees its own id come
// back in the hop header and answers 508 at the second hop instead of recursing.
func TestLoopIsDetectedAtTheSecondHop(t *testing.T) {
	var arrivals atomic.Int32
	var g *gateway.Gateway
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrivals.Add(1)
		g.ServeHTTP(w, r)
	}))
	defer front.Close()
	self := front.URL + gateway.Prefix + "team/provider/self/-"
	gw := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "self", self), provider("team", "loopy", front.URL+gateway.Prefix+"team/openai/-")},
		Entities:  []routing.EntitySpec{entity("team", "loopy", backend("team", "loopy", "team/loopy"))},
	}, gateway.Options{ID: "infergate-test"})
	g = gw.g

	tests := []struct{ name, method, path, body string }{
		{"provider route to itself", "GET", gateway.Prefix + "team/provider/self/-/v1/models", ""},
		{"entity whose provider is the gateway's own OpenAI route", "POST", gateway.Prefix + "team/openai/-/v1/chat/completions", `{"model":"loopy"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			arrivals.Store(0)
			resp, body := do(t, tt.method, front.URL+tt.path, tt.body, map[string]string{"Content-Type": "application/json"})
			if resp.StatusCode != http.StatusLoopDetected {
				t.Fatalf("status %s, want 508: %s", resp.Status, body)
			}
			if e := decodeError(t, body); e.Error.Code != "loop_detected" || !strings.Contains(e.Detail, "leads back to the gateway") {
				t.Errorf("body %s", body)
			}
			if n := arrivals.Load(); n != 2 {
				t.Errorf("%d requests reached the gateway, want 2 (the client's, then the looped one)", n)
			}
		})
	}
}

// The hop header of another gateway (chained installations) is kept and extended; the
// gateway's own id coming back is refused, whoever sends it.
func TestHopHeader(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{ID: "infergate-me"})
	chat := func(hop string) *http.Response {
		h := map[string]string{"Content-Type": "application/json"}
		if hop != "" {
			h[egress.HopHeader] = hop
		}
		resp, _ := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`, h)
		return resp
	}
	if resp := chat(""); resp.StatusCode != 200 || up.lastRequest(t).Header.Get(egress.HopHeader) != "infergate-me" {
		t.Errorf("%s, upstream saw %s %q", resp.Status, egress.HopHeader, up.lastRequest(t).Header.Get(egress.HopHeader))
	}
	if resp := chat("infergate-other"); resp.StatusCode != 200 || up.lastRequest(t).Header.Get(egress.HopHeader) != "infergate-other,infergate-me" {
		t.Errorf("%s, upstream saw %s %q", resp.Status, egress.HopHeader, up.lastRequest(t).Header.Get(egress.HopHeader))
	}
	if resp := chat("infergate-other, infergate-me"); resp.StatusCode != http.StatusLoopDetected {
		t.Errorf("own id: %s, want 508", resp.Status)
	}
	if resp := chat("a,b,c,d,e,f,g,h"); resp.StatusCode != http.StatusLoopDetected {
		t.Errorf("%d gateways: %s, want 508", egress.MaxHops, resp.Status)
	}
}

// Loopback, link-local, unspecified and cloud metadata upstreams, and the IPv6 forms that
// stand for them, are refused at connect time unless allowed.
func TestLocalUpstreamsAreRefused(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(up.srv.URL, "http://"))
	tests := []struct{ name, url, address string }{
		{"local", up.srv.URL, "127.0.0.1:" + port},
		{"named", "http://localhost:" + port, ":" + port},
		{"metadata", "http://169.254.169.254", "169.254.169.254:80"},
		{"aws-imds-ipv6", "http://[fd00:ec2::254]", "[fd00:ec2::254]:80"},
		{"gcp-metadata-ipv6", "http://[fd20:ce::254]", "[fd20:ce::254]:80"},
		{"alibaba-metadata", "http://100.100.100.200", "100.100.100.200:80"},
		{"azure-wireserver", "http://168.63.129.16", "168.63.129.16:80"},
		{"nat64-loopback", "http://[64:ff9b::7f00:1]:" + port, "[64:ff9b::7f00:1]:" + port},
		{"nat64-metadata", "http://[64:ff9b::a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]:80"},
	}
	spec := routing.Spec{Entities: []routing.EntitySpec{entity("team", "llama", backend("team", "local", served))}}
	for _, tt := range tests {
		p := provider("team", tt.name, tt.url)
		p.Timeouts.Connect = time.Second // should a dial go out after all
		spec.Providers = append(spec.Providers, p)
	}
	g := newGatewayAs(t, spec, gateway.Options{})
	check := func(path, address string) {
		t.Helper()
		resp, body := do(t, "POST", g.base("team")+path, `{"model":"llama"}`, map[string]string{"Content-Type": "application/json"})
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("%s: %s, want 502: %s", path, resp.Status, body)
			return
		}
		if e := decodeError(t, body); e.Error.Code != "upstream_not_allowed" || !strings.Contains(e.Detail, address) || !strings.Contains(e.Detail, "--allow-local-upstreams") {
			t.Errorf("%s: %s, want a refusal of %s", path, body, address)
		}
	}
	check("/openai/-/v1/chat/completions", "127.0.0.1:"+port)
	for _, tt := range tests {
		check("/provider/"+tt.name+"/-/v1/chat/completions", tt.address)
	}
	if n := up.sim.Served(); n != 0 {
		t.Errorf("the loopback upstream served %d requests", n)
	}
}

// forwardProxy is an HTTP forward proxy on loopback that can reach anything, cloud metadata
// included: it sends whatever it is asked for to one upstream, and records the targets.
type forwardProxy struct {
	url     string
	mu      sync.Mutex
	targets []string
}

func newForwardProxy(t *testing.T, upstream string) *forwardProxy {
	t.Helper()
	to, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	fp := &forwardProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(to) },
		Transport: &http.Transport{}, // no proxy of its own
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.mu.Lock()
		fp.targets = append(fp.targets, r.Method+" "+r.URL.Host)
		fp.mu.Unlock()
		if r.Method == http.MethodConnect || r.URL.Host == "" {
			http.Error(w, "a forward proxy of absolute-form HTTP requests", http.StatusMethodNotAllowed)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	fp.url = srv.URL
	return fp
}

// seen returns the targets the proxy was asked for, and forgets them.
func (fp *forwardProxy) seen() []string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	s := fp.targets
	fp.targets = nil
	return s
}

// useProxy points HTTP_PROXY and HTTPS_PROXY at fp, for what reads them from now on.
func useProxy(t *testing.T, fp *forwardProxy) {
	t.Setenv("HTTP_PROXY", fp.url)
	t.Setenv("HTTPS_PROXY", fp.url)
	t.Setenv("NO_PROXY", "")
}

// With HTTP_PROXY and HTTPS_PROXY in the manager's environment, and no opt-in, the gateway,
// the probes and the scrapes ignore the proxy and dial the upstream themselves: a denied
// upstream is refused by its own address, and the proxy never hears of it.
func TestEnvironmentProxyIsIgnoredByDefault(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	fp := newForwardProxy(t, up.srv.URL)
	useProxy(t, fp)
	for _, tt := range []struct{ url, address string }{
		{"http://100.100.100.200", "100.100.100.200:80"},
		{"http://[64:ff9b::a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]:80"},
		{"http://169.254.169.254", "169.254.169.254:80"},
	} {
		p := provider("team", "metadata", tt.url)
		p.Timeouts.Connect = time.Second // should a dial go out after all
		g := newGatewayAs(t, routing.Spec{Providers: []routing.ProviderSpec{p}}, gateway.Options{})
		resp, body := do(t, "GET", g.base("team")+"/provider/metadata/-/latest/meta-data/", "", nil)
		if resp.StatusCode != http.StatusBadGateway {
			t.Errorf("gateway to %s: %s %q, want a refusal of %s", tt.url, resp.Status, body, tt.address)
		} else if e := decodeError(t, body); e.Error.Code != "upstream_not_allowed" || !strings.Contains(e.Detail, tt.address) {
			t.Errorf("gateway to %s: %s, want a refusal of %s", tt.url, body, tt.address)
		}

		r := discovery.NewProber(10*time.Second, false, "").Probe(ctxTimeout(t, 10*time.Second), discovery.Request{BaseURL: tt.url})
		if r.Reason != inferencev1alpha1.ReasonAddressNotAllowed || !strings.Contains(r.Message, tt.address) {
			t.Errorf("probe of %s: %s %s, want %s naming %s", tt.url, r.Reason, r.Message, inferencev1alpha1.ReasonAddressNotAllowed, tt.address)
		}

		_, _, err := scrape.Fetch(ctxTimeout(t, 10*time.Second), scrape.NewClient(false), scrape.Target{URL: tt.url + "/metrics"})
		if !egress.IsNotAllowed(err) || !strings.Contains(err.Error(), tt.address) {
			t.Errorf("scrape of %s: %v, want a refusal of %s", tt.url, err, tt.address)
		}
		if s := fp.seen(); len(s) > 0 {
			t.Errorf("%s: the proxy was asked for %q", tt.url, s)
		}
	}
	if n := up.sim.Served(); n != 0 {
		t.Errorf("the upstream behind the proxy served %d requests", n)
	}
}

// With --egress-proxy-from-environment the gateway, the probes and the scrapes use the
// environment's proxy, which may sit on loopback, but only for upstreams whose addresses pass
// the rules: a denied one is refused before the proxy hears of it.
func TestProxyFromTheEnvironmentChecksTheUpstream(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	fp := newForwardProxy(t, up.srv.URL)
	useProxy(t, fp)
	policy, err := egress.New(egress.Options{ProxyFromEnvironment: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		url     string
		address string // refused, naming it; empty: proxied
	}{
		{"http://192.0.2.10", ""},
		{"http://[2001:db8::10]:8000", ""},
		{"http://100.100.100.200", "100.100.100.200:80"},
		{"http://[fd00:ec2::254]", "[fd00:ec2::254]:80"},
		{"http://[64:ff9b::a9fe:a9fe]", "[64:ff9b::a9fe:a9fe]:80"},
		{"http://[64:ff9b::7f00:1]:8000", "[64:ff9b::7f00:1]:8000"},
		{fp.url, strings.TrimPrefix(fp.url, "http://")}, // the proxy itself
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			fp.seen()
			target := strings.TrimPrefix(tt.url, "http://")
			p := provider("team", "up", tt.url)
			g := newGatewayAs(t, routing.Spec{Providers: []routing.ProviderSpec{p},
				Entities: []routing.EntitySpec{entity("team", "llama", backend("team", "up", served))}}, gateway.Options{Egress: policy})
			if tt.address == "" {
				if _, err := g.client("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams("llama")); err != nil {
					t.Errorf("gateway: %v", err)
				}
			} else {
				resp, body := do(t, "POST", g.base("team")+"/openai/-/v1/chat/completions", `{"model":"llama","messages":[]}`, nil)
				if e := decodeError(t, body); resp.StatusCode != http.StatusBadGateway || e.Error.Code != "upstream_not_allowed" || !strings.Contains(e.Detail, tt.address) {
					t.Errorf("gateway: %s %s, want a refusal of %s", resp.Status, body, tt.address)
				}
			}

			r := discovery.NewProberFor(10*time.Second, policy, "").Probe(ctxTimeout(t, 10*time.Second), discovery.Request{BaseURL: tt.url})
			switch {
			case tt.address == "" && !r.Ready:
				t.Errorf("probe: %s %s", r.Reason, r.Message)
			case tt.address != "" && (r.Reason != inferencev1alpha1.ReasonAddressNotAllowed || !strings.Contains(r.Message, tt.address)):
				t.Errorf("probe: %s %s, want %s naming %s", r.Reason, r.Message, inferencev1alpha1.ReasonAddressNotAllowed, tt.address)
			}

			_, _, err := scrape.Fetch(ctxTimeout(t, 10*time.Second), scrape.NewClientFor(policy), scrape.Target{URL: tt.url + "/metrics"})
			switch {
			case tt.address == "" && err != nil:
				t.Errorf("scrape: %v", err)
			case tt.address != "" && (!egress.IsNotAllowed(err) || !strings.Contains(err.Error(), tt.address)):
				t.Errorf("scrape: %v, want a refusal of %s", err, tt.address)
			}

			seen := fp.seen()
			switch {
			case tt.address == "" && len(seen) != 3:
				t.Errorf("the proxy was asked for %q, want the chat, the probe and the scrape", seen)
			case tt.address == "" && !slices.Equal(seen, []string{"POST " + target, "GET " + target, "GET " + target}):
				t.Errorf("the proxy was asked for %q, want %s", seen, target)
			case tt.address != "" && len(seen) > 0:
				t.Errorf("the proxy was asked for %q", seen)
			}
		})
	}
}

// The provider route serves Ready providers only, like the entity routes.
func TestProviderRouteNeedsAReadyProvider(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	notReady := provider("team", "down", up.srv.URL)
	notReady.Ready = false
	g := newGateway(t, routing.Spec{Providers: []routing.ProviderSpec{notReady}}, gateway.Options{})
	resp, body := do(t, "GET", g.base("team")+"/provider/down/-/v1/models", "", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || decodeError(t, body).Error.Code != "provider_not_ready" {
		t.Errorf("%s %s", resp.Status, body)
	}
	if up.sim.Served() != 0 {
		t.Error("a provider that is not Ready was proxied to")
	}
}

// An upstream's redirect is passed to the client, never followed with the provider's key.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer target.Close()
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer redirecting.Close()
	p := provider("team", "moved", redirecting.URL)
	p.AuthHeader, p.AuthValue = "Authorization", "Bearer sk-provider"
	g := newGateway(t, routing.Spec{Providers: []routing.ProviderSpec{p},
		Entities: []routing.EntitySpec{entity("team", "llama", backend("team", "moved", served))}}, gateway.Options{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{"/openai/-/v1/chat/completions", "/provider/moved/-/v1/chat/completions"} {
		resp, err := client.Post(g.base("team")+path, "application/json", strings.NewReader(`{"model":"llama"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTemporaryRedirect || !strings.HasPrefix(resp.Header.Get("Location"), target.URL) {
			t.Errorf("%s: %s, Location %q", path, resp.Status, resp.Header.Get("Location"))
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect target received %d requests", n)
	}
}

// A trailing path with dot segments, escaped or not, would leave the provider's base path
// upstream with the provider's key attached: 400, and nothing reaches the upstream.
func TestDotSegmentsCannotLeaveTheBasePath(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	p := provider("team", "tenant-a", up.srv.URL+"/tenant-a")
	p.AuthHeader, p.AuthValue = "Authorization", "Bearer sk-tenant-a"
	g := newGateway(t, routing.Spec{Providers: []routing.ProviderSpec{p},
		Entities: []routing.EntitySpec{entity("team", "llama", backend("team", "tenant-a", served))}}, gateway.Options{})
	for _, trailing := range []string{
		"../../tenant-b/v1/models", "v1/../../tenant-b/v1/models", "%2e%2e/tenant-b/v1/models", "%2E%2e/x", ".%2e/x", "./v1/models",
		"v1/%2e", "..%2f..%2ftenant-b", "..%5c..%5ctenant-b", "v1/models/..",
	} {
		for _, route := range []string{"/provider/tenant-a/-/", "/model/llama/-/", "/openai/-/"} {
			req, err := http.NewRequest("GET", g.base("team")+route+trailing, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("%s%s: %s, want 400", route, trailing, resp.Status)
			}
		}
	}
	if n := up.sim.Served(); n != 0 {
		t.Errorf("the upstream served %d requests", n)
	}
	// Dots inside a segment are names, not dot segments.
	resp, _ := do(t, "GET", g.base("team")+"/provider/tenant-a/-/v1/models/meta..llama.v3", "", nil)
	if resp.StatusCode == http.StatusBadRequest {
		t.Errorf("a name with dots: %s", resp.Status)
	}
}

// A body that names its model twice is refused: the gateway would route, authorize and
// rewrite one, and an upstream might read the other.
func TestDuplicateModelIsRefused(t *testing.T) {
	up := newUpstream(t, simulator.Options{Models: []string{served}})
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "nim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "nim", served))},
	}, gateway.Options{})
	for _, body := range []string{
		`{"model":"llama","messages":[],"model":"other/expensive-model"}`,
		`{"model":"llama","mod\u0065l":"other/expensive-model"}`,
		// Servers that decode with Go's encoding/json read a key in any letter case.
		`{"model":"llama","messages":[],"Model":"other/expensive-model"}`,
		`{"model":"llama","MODEL":"other/expensive-model"}`,
		`{"Model":"llama","messages":[]}`,
		`{"mod\u0045l":"llama"}`,
	} {
		for _, path := range []string{"/openai/-/v1/chat/completions", "/model/llama/-/v1/chat/completions"} {
			resp, data := do(t, "POST", g.base("team")+path, body, map[string]string{"Content-Type": "application/json"})
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(data), "'model' is given more than once") {
				t.Errorf("%s %s: %s %s", path, body, resp.Status, data)
			}
		}
	}
	if up.sim.Served() != 0 {
		t.Error("a body with two models reached the upstream")
	}
}
