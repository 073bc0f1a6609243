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

// The upstream request: what of the client's goes, and where each attempt is pointed.

package gateway

import (
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/routing"
)

// rewrite shapes the outbound request: the client's credentials and forwarding headers go,
// the request id goes up. The provider's URL, key and extras are set per attempt in RoundTrip.
func (g *Gateway) rewrite(p *httputil.ProxyRequest) {
	pr := fromContext(p.In.Context())
	h := p.Out.Header
	for name := range h {
		if strings.HasPrefix(name, "X-Forwarded-") {
			delete(h, name)
		}
	}
	for _, name := range clientOnlyHeaders {
		delete(h, name)
	}
	if pr.entity != nil || pr.budgeted {
		// The response must come back uncompressed so that its model can be rewritten and its
		// usage read.
		delete(h, "Accept-Encoding")
	}
}

// clientOnlyHeaders never reach an upstream: credentials of the client, and forwarding
// headers that would disclose the client's network.
var clientOnlyHeaders = []string{"Authorization", "Proxy-Authorization", "X-Api-Key", "Cookie", "Forwarded", "X-Real-Ip", PriorityHeader}

// prepare points req at provider p: URL, credentials, extra headers and the body.
func (g *Gateway) prepare(req *http.Request, pr *proxyRequest, p *routing.Provider, served []byte) {
	u := *p.URL
	trailing := pr.rt.trailing
	if strings.IndexByte(trailing, '%') >= 0 {
		escaped := upstreamPath(p.URL.EscapedPath(), p.BaseEndsInV1, trailing)
		if path, err := url.PathUnescape(escaped); err == nil {
			u.Path, u.RawPath = path, escaped
		} else {
			u.Path = upstreamPath(p.URL.Path, p.BaseEndsInV1, trailing)
		}
	} else {
		u.Path = upstreamPath(p.URL.Path, p.BaseEndsInV1, trailing)
	}
	u.RawQuery = pr.in.URL.RawQuery
	req.URL = &u
	req.Host = ""

	h := req.Header
	for _, d := range p.DefaultHeaders {
		if _, ok := h[d.Name]; !ok {
			h[d.Name] = d.Values
		}
	}
	for _, d := range p.RequiredHeaders {
		h[d.Name] = d.Values
	}
	if p.AuthHeader != "" {
		h[p.AuthHeader] = p.AuthValues
	}
	// Last, so that nothing a Provider sets can replace them (the routing table drops such
	// names too: routing.ReservedHeader).
	h["X-Request-Id"] = pr.requestIDs
	h[egress.HopHeader] = pr.hops

	if pr.body == nil {
		return // streamed through (or no body)
	}
	var segs [][]byte
	if pr.object {
		segs = requestBody(make([][]byte, 0, 4), pr.body.b, pr.members, pr.model, pr.setModel, served, p, pr.overrides)
	} else {
		segs = [][]byte{pr.body.b}
	}
	// The transport writes Content-Length from req.ContentLength.
	n := segmentsLen(segs)
	req.ContentLength = n
	if n == 0 {
		req.Body, req.GetBody = http.NoBody, nil
		return
	}
	buf := pr.body
	req.Body = newSegments(segs, buf)
	// GetBody lets the transport replay the body on a fresh connection when a kept-alive one
	// turns out to be closed.
	req.GetBody = func() (io.ReadCloser, error) { return newSegments(segs, buf), nil }
}
