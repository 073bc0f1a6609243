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

package egress

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/http/httpproxy"
)

// Dial connects to address within timeout (0: none but ctx's) when the policy allows the
// address it dials, after name resolution: the check runs in the dialer's Control hook, on
// each address tried. The manager's own proxy (with Options.ProxyFromEnvironment) is dialled
// without the rules: the operator chose it, and Proxy has checked the upstream behind it.
func (p *Policy) Dial(ctx context.Context, network, address string, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if p.checks() && !p.isProxy(address) {
		d.Control = p.control
	}
	return d.DialContext(ctx, network, address)
}

func (p *Policy) control(_, address string, _ syscall.RawConn) error { return p.Check(address) }

// DialContext returns Dial with a fixed timeout, for http.Transport.DialContext.
func (p *Policy) DialContext(timeout time.Duration) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		return p.Dial(ctx, network, address, timeout)
	}
}

// Transport returns a copy of http.DefaultTransport whose connections follow the policy: each
// dial within connect and checked, and a proxy only as Proxy decides.
func (p *Policy) Transport(connect time.Duration) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = p.Proxy()
	tr.DialContext = p.DialContext(connect)
	return tr
}

// lookupTimeout bounds the name resolution of Proxy.
const lookupTimeout = 10 * time.Second

// lookup resolves the host of a request that Proxy would send to a proxy.
var lookup = net.DefaultResolver.LookupNetIP

// Proxy returns the http.Transport.Proxy of the manager's upstream clients: nil, no proxy at
// all, unless the policy was made with Options.ProxyFromEnvironment. Then a request goes
// through the environment's proxy (HTTP_PROXY, HTTPS_PROXY, NO_PROXY, as
// http.ProxyFromEnvironment reads them) only once every address its host resolves to passes
// the rules, since the proxy, not the manager, connects to the upstream; requests that
// NO_PROXY sends direct are checked when dialled.
//
// The proxy resolves the host again: a name whose answer changes in between (DNS rebinding)
// can still lead the proxy to an address the manager would refuse. Only the proxy can close
// that gap; give it the same denied ranges (see the README's Security section).
func (p *Policy) Proxy() func(*http.Request) (*url.URL, error) {
	if p.proxy == nil {
		return nil
	}
	return p.proxyFor
}

func (p *Policy) proxyFor(req *http.Request) (*url.URL, error) {
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = defaultPorts[req.URL.Scheme]
	}
	target := net.JoinHostPort(host, port)
	if p.isProxy(target) {
		// Its dial skips the rules: a Provider must not name it, with NO_PROXY or not.
		return nil, refused(&NotAllowedError{Address: target, Kind: KindProxy})
	}
	proxy, err := p.proxy(req.URL)
	if err != nil || proxy == nil || !p.checks() {
		return proxy, err
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if err := p.check(target, ip); err != nil {
			return nil, refused(err)
		}
		return proxy, nil
	}
	ctx, cancel := context.WithTimeout(req.Context(), lookupTimeout)
	defer cancel()
	ips, err := lookup(ctx, "ip", host)
	if err != nil {
		return nil, refused(err)
	}
	for _, ip := range ips {
		if err := p.check(net.JoinHostPort(ip.String(), port), ip); err != nil {
			return nil, refused(err)
		}
	}
	return proxy, nil
}

// refused wraps an error of Proxy as a failed dial: the request provably went nowhere.
func refused(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }

// defaultPorts are the ports of URLs that name none, as http.Transport completes them.
var defaultPorts = map[string]string{"http": "80", "https": "443", "socks5": "1080", "socks5h": "1080"}

func (p *Policy) setProxyFromEnvironment() {
	cfg := httpproxy.FromEnvironment()
	p.proxy = cfg.ProxyFunc()
	for _, v := range []string{cfg.HTTPProxy, cfg.HTTPSProxy} {
		if v == "" {
			continue
		}
		// As httpproxy parses it: a URL, or host[:port] of an http proxy.
		u, err := url.Parse(v)
		if err != nil || u.Scheme == "" || u.Host == "" {
			if u, err = url.Parse("http://" + v); err != nil {
				continue
			}
		}
		port := u.Port()
		if port == "" {
			port = defaultPorts[u.Scheme]
		}
		p.proxies = append(p.proxies, strings.ToLower(net.JoinHostPort(u.Hostname(), port)))
	}
}

// isProxy reports whether address (host:port, as dialled) is one of the environment's proxies.
func (p *Policy) isProxy(address string) bool {
	return len(p.proxies) > 0 && slices.Contains(p.proxies, strings.ToLower(address))
}
