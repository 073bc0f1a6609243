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

package gateway

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/infergate/infergate/internal/routing"
)

// testGateway serves a gateway for providers on loopback; it returns the gateway and the base
// URL of workspace team.
func testGateway(t *testing.T, providers []routing.ProviderSpec, opts Options) (*Gateway, string) {
	t.Helper()
	table, errs := routing.New(routing.Spec{Providers: providers}, nil)
	if len(errs) > 0 {
		t.Fatalf("routing table: %v", errs)
	}
	opts.Store = routing.NewStore()
	opts.Store.Swap(table)
	opts.AllowLocalUpstreams = true
	g, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		g.CloseIdleConnections()
	})
	return g, srv.URL + Prefix + "team"
}

// get sends GET url and returns the status and the error code of the gateway's answer, if any.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // against a hang only
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Error.Code
}

func transports(g *Gateway) int {
	n := 0
	g.transports.Range(func(any, any) bool { n++; return true })
	return n
}

// Tenants choose their providers' timeouts freely: however many they choose, the gateway keeps
// one transport, and providers of one upstream share its connections.
func TestProvidersShareOneTransport(t *testing.T) {
	var conns atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"object":"list","data":[]}`)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)

	const n = 40
	var providers []routing.ProviderSpec
	for i := range n {
		p := routing.ProviderSpec{Workspace: "team", Name: fmt.Sprintf("p%d", i), BaseURL: up.URL, Ready: true}
		p.Timeouts.Connect = time.Second + time.Duration(i)*time.Millisecond
		p.Timeouts.ResponseHeader = time.Minute + time.Duration(i)*time.Millisecond
		providers = append(providers, p)
	}
	g, base := testGateway(t, providers, Options{})
	for i := range n {
		if status, code := get(t, fmt.Sprintf("%s/provider/p%d/-/v1/models", base, i)); status != http.StatusOK {
			t.Fatalf("p%d: %d %s", i, status, code)
		}
	}
	if got := transports(g); got != 1 {
		t.Errorf("%d providers with distinct timeouts made %d transports, want 1", n, got)
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d sequential requests through %d providers of one upstream opened %d connections, want 1", n, n, got)
	}
}

// hanging is an upstream that accepts requests and never answers their headers; it counts
// them.
func hanging(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		n.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// Each provider's response header timeout fires, on the one shared transport: 504 with the
// gateway's timeout error, and another provider's longer timeout is not cut short by it.
func TestResponseHeaderTimeoutOfEachProvider(t *testing.T) {
	hang, received := hanging(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, "late but in time")
	}))
	t.Cleanup(slow.Close)

	const n = 12
	var providers []routing.ProviderSpec
	for i := range n {
		p := routing.ProviderSpec{Workspace: "team", Name: fmt.Sprintf("p%d", i), BaseURL: hang.URL, Ready: true}
		p.Timeouts.ResponseHeader = 50*time.Millisecond + time.Duration(i)*7*time.Millisecond
		providers = append(providers, p)
	}
	patient := routing.ProviderSpec{Workspace: "team", Name: "patient", BaseURL: slow.URL, Ready: true}
	patient.Timeouts.ResponseHeader = time.Hour
	providers = append(providers, patient)
	g, base := testGateway(t, providers, Options{Timeouts: routing.Timeouts{ResponseHeader: time.Hour}})
	for i := range n {
		if status, code := get(t, fmt.Sprintf("%s/provider/p%d/-/v1/models", base, i)); status != http.StatusGatewayTimeout || code != "upstream_timeout" {
			t.Errorf("p%d: %d %s, want 504 upstream_timeout", i, status, code)
		}
	}
	if got := received.Load(); got != n {
		t.Errorf("the upstream received %d requests, want %d", got, n)
	}
	if status, code := get(t, base+"/provider/patient/-/v1/models"); status != http.StatusOK {
		t.Errorf("a provider with a longer timeout: %d %s", status, code)
	}
	if got := transports(g); got != 1 {
		t.Errorf("%d transports, want 1", got)
	}
}

// The errors of the shared transport's timeouts are those the attempt loop classifies: no
// response headers in time is a timeout after which the request may have run, no connection
// in time a failed dial after which it did not.
func TestTimeoutErrorsAreClassified(t *testing.T) {
	hang, _ := hanging(t)
	g, _ := testGateway(t, nil, Options{})
	tests := []struct {
		name     string
		timeouts routing.Timeouts
		reason   string
		safe     bool
	}{
		{"no response headers in time", routing.Timeouts{Connect: time.Minute, ResponseHeader: 50 * time.Millisecond}, reasonTimeout, false},
		{"no connection in time", routing.Timeouts{Connect: time.Nanosecond, ResponseHeader: time.Minute}, reasonConnect, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g.CloseIdleConnections() // each dials anew
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, hang.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := g.transportFor(tt.timeouts).RoundTrip(req)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("%s answered", resp.Status)
			}
			if reason, safe := failureOf(err); reason != tt.reason || safe != tt.safe || !isTimeout(err) {
				t.Errorf("%v: %s, safe %v, timeout %v; want %s, %v, a timeout", err, reason, safe, isTimeout(err), tt.reason, tt.safe)
			}
		})
	}
}

// The connect timeout bounds the TLS handshake too: an upstream that accepts the connection
// and never answers the handshake gets 504 within the provider's connect timeout, not the
// gateway's default one.
func TestConnectTimeoutBoundsTheTLSHandshake(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		var conns []net.Conn // held open, never answered
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	p := routing.ProviderSpec{Workspace: "team", Name: "mute", BaseURL: "https://" + l.Addr().String(), Ready: true}
	p.Timeouts.Connect = 100 * time.Millisecond
	_, base := testGateway(t, []routing.ProviderSpec{p}, Options{Timeouts: routing.Timeouts{Connect: time.Hour, ResponseHeader: time.Hour}})
	if status, code := get(t, base+"/provider/mute/-/v1/models"); status != http.StatusGatewayTimeout || code != "upstream_timeout" {
		t.Errorf("%d %s, want 504 upstream_timeout", status, code)
	}
	if accepted.Load() == 0 {
		t.Error("the upstream accepted no connection")
	}
}

// HTTPS upstreams speak HTTP/2 when they can, and providers of one upstream share its
// connection.
func TestTLSUpstreamsUseHTTP2(t *testing.T) {
	var conns atomic.Int32
	var protos atomic.Value
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto)
		_, _ = io.WriteString(w, "ok")
	}))
	up.EnableHTTP2 = true
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.StartTLS()
	t.Cleanup(up.Close)

	var providers []routing.ProviderSpec
	for i := range 3 {
		p := routing.ProviderSpec{Workspace: "team", Name: fmt.Sprintf("p%d", i), BaseURL: up.URL, Ready: true}
		p.Timeouts.Connect = time.Duration(i+1) * time.Second
		providers = append(providers, p)
	}
	g, base := testGateway(t, providers, Options{})
	trusted := up.Client().Transport.(*http.Transport).TLSClientConfig
	g.transports.Store(transportKey{}, g.newTransport(&tls.Config{RootCAs: trusted.RootCAs}))
	for i := range 3 {
		if status, code := get(t, fmt.Sprintf("%s/provider/p%d/-/v1/models", base, i)); status != http.StatusOK {
			t.Fatalf("p%d: %d %s", i, status, code)
		}
	}
	if p, _ := protos.Load().(string); !strings.HasPrefix(p, "HTTP/2") {
		t.Errorf("the upstream saw %s, want HTTP/2", p)
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d connections, want 1", got)
	}
}
