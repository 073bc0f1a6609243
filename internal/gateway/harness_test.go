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
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testutil"
)

// upstream is a simulator on a loopback port.
type upstream struct {
	sim *simulator.Server
	srv *httptest.Server
}

func newUpstream(t *testing.T, opts simulator.Options) *upstream {
	t.Helper()
	opts.Record = true
	sim := simulator.New(opts)
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return &upstream{sim: sim, srv: srv}
}

// lastRequest returns what the upstream last received.
func (u *upstream) lastRequest(t *testing.T) simulator.Request {
	t.Helper()
	req, ok := u.sim.LastRequest()
	if !ok {
		t.Fatal("the upstream received nothing")
	}
	return req
}

// deadURL is a loopback URL where nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// gw is a gateway on a loopback port.
type gw struct {
	url   string
	store *routing.Store
	reg   *prometheus.Registry
	g     *gateway.Gateway
}

// newGateway serves a gateway for spec; upstreams may be on loopback, as the tests' are.
func newGateway(t *testing.T, spec routing.Spec, opts gateway.Options) *gw {
	t.Helper()
	opts.AllowLocalUpstreams = true
	return newGatewayAs(t, spec, opts)
}

// newGatewayAs serves a gateway for spec with opts as they are.
func newGatewayAs(t *testing.T, spec routing.Spec, opts gateway.Options) *gw {
	t.Helper()
	store := routing.NewStore()
	table, errs := routing.New(spec, nil)
	if len(errs) > 0 {
		t.Fatalf("routing table: %v", errs)
	}
	store.Swap(table)
	reg := prometheus.NewRegistry()
	opts.Store, opts.Registerer, opts.Gatherer = store, reg, reg
	g, err := gateway.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		g.CloseIdleConnections()
	})
	return &gw{url: srv.URL, store: store, reg: reg, g: g}
}

func (g *gw) base(ws string) string { return g.url + gateway.Prefix + ws }

// client is an OpenAI SDK client for the OpenAI route of workspace ws, with its own API key
// (which must never reach an upstream) and no SDK retries, so that tests see the gateway's own
// behaviour.
func (g *gw) client(ws string, opts ...option.RequestOption) *openai.Client {
	c := openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(g.base(ws) + "/openai/-/v1/"),
		option.WithAPIKey("client-key-must-not-leak"),
		option.WithMaxRetries(0),
	}, opts...)...)
	return &c
}

// provider returns a ready provider spec for an upstream.
func provider(ws, name, url string) routing.ProviderSpec {
	return routing.ProviderSpec{Workspace: ws, Name: name, BaseURL: url, Ready: true}
}

func entity(ws, name string, backends ...routing.BackendSpec) routing.EntitySpec {
	return routing.EntitySpec{Workspace: ws, Name: name, Created: time.Unix(1700000000, 0), Backends: backends}
}

func backend(ws, name, served string) routing.BackendSpec {
	return routing.BackendSpec{Workspace: ws, Name: name, ServedModel: served, Weight: 1}
}

func chatParams(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{
		Model:    model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")},
	}
}

// do sends a raw request through the gateway.
func do(t *testing.T, method, url, body string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

// errorBody is the gateway's error shape.
type errorBody struct {
	Detail string `json:"detail"`
	Error  struct {
		Message string `json:"message"`
		Type    string `json:"type"`
		Code    string `json:"code"`
	} `json:"error"`
}

func decodeError(t *testing.T, data []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(data, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, data)
	}
	if e.Detail == "" || e.Error.Message != e.Detail || e.Error.Type == "" || e.Error.Code == "" {
		t.Fatalf("error body lacks detail or the OpenAI error object: %s", data)
	}
	return e
}

// counter sums a metric family's samples whose labels include all of want.
func counter(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	return testutil.MetricSum(t, reg, name, want)
}

// eventually polls check until it passes or the deadline expires.
func eventually(t *testing.T, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newHTTPTestServer(h http.Handler) *httptest.Server { return httptest.NewServer(h) }

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

var volatileFields = regexp.MustCompile(`"(id|created)":("[^"]*"|[0-9]+)`)

// regexpReplace blanks the fields of a chunk that differ from run to run.
func regexpReplace(line string) string { return volatileFields.ReplaceAllString(line, `"$1":_`) }
