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
	"net/http"
	"time"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/routing"
)

type transportKey struct{ connect, responseHeader time.Duration }

// transportFor returns the shared transport for a set of timeouts; providers with the same
// timeouts share connections pools per host.
func (g *Gateway) transportFor(t routing.Timeouts) *http.Transport {
	key := transportKey{t.Connect, t.ResponseHeader}
	if tr, ok := g.transports.Load(key); ok {
		return tr.(*http.Transport)
	}
	policy := g.egressPolicy()
	tr := &http.Transport{
		Proxy:                 policy.Proxy(),
		DialContext:           policy.DialContext(t.Connect),
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   t.Connect,
		ResponseHeaderTimeout: t.ResponseHeader,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	actual, _ := g.transports.LoadOrStore(key, tr)
	return actual.(*http.Transport)
}

// egressPolicy decides where the gateway may connect.
func (g *Gateway) egressPolicy() *egress.Policy {
	if g.opts.Egress != nil {
		return g.opts.Egress
	}
	return egress.Default(g.opts.AllowLocalUpstreams)
}

// CloseIdleConnections closes idle upstream connections.
func (g *Gateway) CloseIdleConnections() {
	g.transports.Range(func(_, v any) bool {
		v.(*http.Transport).CloseIdleConnections()
		return true
	})
}
