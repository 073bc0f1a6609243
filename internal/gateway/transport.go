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
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/routing"
)

// Every upstream request goes through one http.Transport, whatever its provider: one pool of
// connections per upstream host, however many providers point there and whichever timeouts
// they choose (tenants choose them freely; a transport per choice would let them create pools
// without bound). A provider's timeouts travel with each attempt instead: the connect timeout
// in the attempt's context, where the dial reads it, and the response header timeout as a
// timer started once the request is written, which is what Transport.ResponseHeaderTimeout
// does for a whole transport.

// transportKey is the only key of g.transports.
type transportKey struct{}

// transportFor returns what an attempt with timeouts t is sent with.
func (g *Gateway) transportFor(t routing.Timeouts) upstreamTransport {
	tr, ok := g.transports.Load(transportKey{})
	if !ok {
		tr, _ = g.transports.LoadOrStore(transportKey{}, g.newTransport(nil))
	}
	return upstreamTransport{tr: tr.(*http.Transport), timeouts: t}
}

// egressPolicy decides where the gateway may connect.
func (g *Gateway) egressPolicy() *egress.Policy {
	if g.opts.Egress != nil {
		return g.opts.Egress
	}
	return egress.Default(g.opts.AllowLocalUpstreams)
}

// newTransport returns the gateway's transport; tlsConfig, when set, is the base of the TLS
// connections to upstreams (tests trust their own certificates with it).
func (g *Gateway) newTransport(tlsConfig *tls.Config) *http.Transport {
	policy := g.egressPolicy()
	connect := g.opts.Timeouts.Connect // for a dial that carries no attempt
	tr := &http.Transport{
		Proxy: policy.Proxy(),
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return policy.Dial(ctx, network, addr, connectTimeout(ctx, connect))
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   connect,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	if tr.Proxy == nil {
		// The connect timeout bounds the TCP and the TLS handshake together, per attempt. (Through
		// a proxy the transport makes the TLS connection inside the tunnel itself, within
		// TLSHandshakeTimeout.)
		if tlsConfig == nil {
			tlsConfig = &tls.Config{}
		}
		tlsConfig = tlsConfig.Clone()
		tlsConfig.NextProtos = []string{"h2", "http/1.1"}
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, connectTimeout(ctx, connect))
			defer cancel()
			conn, err := policy.Dial(ctx, network, addr, 0)
			if err != nil {
				return nil, err
			}
			cfg := tlsConfig.Clone()
			if cfg.ServerName, _, err = net.SplitHostPort(addr); err != nil {
				conn.Close()
				return nil, err
			}
			tc := tls.Client(conn, cfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		}
	}
	return tr
}

// CloseIdleConnections closes idle upstream connections.
func (g *Gateway) CloseIdleConnections() {
	g.transports.Range(func(_, v any) bool {
		v.(*http.Transport).CloseIdleConnections()
		return true
	})
}

// upstreamTransport sends an attempt with its provider's timeouts.
type upstreamTransport struct {
	tr       *http.Transport
	timeouts routing.Timeouts
}

// The states of an attempt: its response headers are awaited, came, or came too late.
const (
	awaiting int32 = iota
	answered
	late
)

// attempt is the context of one upstream attempt: canceled when the response headers come
// too late, and carrying the connect timeout to the dial.
type attempt struct {
	context.Context
	cancel         context.CancelCauseFunc
	connect        time.Duration
	responseHeader time.Duration
	state          atomic.Int32
	timer          *time.Timer
	trace          httptrace.ClientTrace
}

type attemptKey struct{}

func (a *attempt) Value(key any) any {
	if _, ok := key.(attemptKey); ok {
		return a
	}
	return a.Context.Value(key)
}

// connectTimeout is the connect timeout of the attempt that dials with ctx, or d.
func connectTimeout(ctx context.Context, d time.Duration) time.Duration {
	if a, ok := ctx.Value(attemptKey{}).(*attempt); ok {
		return a.connect
	}
	return d
}

// wrote starts the response header timer once the request is written; again when the
// transport writes it again on another connection.
func (a *attempt) wrote(info httptrace.WroteRequestInfo) {
	if info.Err == nil {
		a.timer.Reset(a.responseHeader)
	}
}

func (a *attempt) expire() {
	if a.state.CompareAndSwap(awaiting, late) {
		a.cancel(errResponseHeaderTimeout)
	}
}

// errResponseHeaderTimeout ends an attempt whose response headers did not come in time: a
// net.Error that times out, as net/http's own.
var errResponseHeaderTimeout error = responseHeaderTimeoutError{}

type responseHeaderTimeoutError struct{}

func (responseHeaderTimeoutError) Error() string   { return "timeout awaiting response headers" }
func (responseHeaderTimeoutError) Timeout() bool   { return true }
func (responseHeaderTimeoutError) Temporary() bool { return true }

// RoundTrip sends req within the provider's connect and response header timeouts. The
// attempt's context stays open after the headers, while the body is read; the request's own
// context ends it.
func (u upstreamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	a := &attempt{connect: u.timeouts.Connect, responseHeader: u.timeouts.ResponseHeader}
	a.Context, a.cancel = context.WithCancelCause(req.Context())
	a.timer = time.AfterFunc(math.MaxInt64, a.expire) // started by wrote
	a.trace.WroteRequest = a.wrote
	resp, err := u.tr.RoundTrip(req.WithContext(httptrace.WithClientTrace(a, &a.trace)))
	if !a.state.CompareAndSwap(awaiting, answered) {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, errResponseHeaderTimeout
	}
	a.timer.Stop()
	if err != nil {
		a.cancel(err)
	}
	return resp, err
}
