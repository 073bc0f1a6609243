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
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The narrowest range that holds an address decides; an allowed range wins over a denied one
// of the same size; --allow-local-upstreams lifts the built-in ranges and nothing else.
func TestPolicyPrecedence(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		address string
		kind    string // empty: allowed
		rng     string // the range the refusal names
	}{
		{"a denied range", Options{Deny: []string{"10.0.0.0/8"}}, "10.1.2.3:443", KindDenied, "10.0.0.0/8"},
		{"outside the denied range", Options{Deny: []string{"10.0.0.0/8"}}, "11.0.0.1:443", "", ""},
		{"an allowed range carved out of a denied one", Options{Deny: []string{"10.0.0.0/8"}, Allow: []string{"10.20.0.0/16"}}, "10.20.1.1:443", "", ""},
		{"beside the carved range", Options{Deny: []string{"10.0.0.0/8"}, Allow: []string{"10.20.0.0/16"}}, "10.21.0.1:443", KindDenied, "10.0.0.0/8"},
		{"a narrower deny inside an allowed range", Options{Deny: []string{"10.20.30.0/24"}, Allow: []string{"10.20.0.0/16"}}, "10.20.30.4:443", KindDenied, "10.20.30.0/24"},
		{"the carrier-grade NAT range allowed", Options{Allow: []string{"100.64.0.0/10"}}, "100.64.0.1:443", "", ""},
		{"Alibaba's metadata inside an allowed carrier-grade NAT range", Options{Allow: []string{"100.64.0.0/10"}}, "100.100.100.200:80", KindMetadata, "100.100.100.200/32"},
		{"link-local allowed", Options{Allow: []string{"169.254.0.0/16"}}, "169.254.1.1:80", "", ""},
		{"metadata inside an allowed link-local range", Options{Allow: []string{"169.254.0.0/16"}}, "169.254.169.254:80", KindMetadata, "169.254.169.254/32"},
		{"metadata allowed by its address", Options{Allow: []string{"169.254.169.254"}}, "169.254.169.254:80", "", ""},
		{"metadata allowed by its address, in NAT64 form", Options{Allow: []string{"169.254.169.254"}}, "[64:ff9b::a9fe:a9fe]:80", "", ""},
		{"an allowed range of the same size as a denied one", Options{Allow: []string{"127.0.0.0/8"}}, "127.0.0.1:80", "", ""},
		{"IPv6 loopback beside an allowed IPv4 loopback", Options{Allow: []string{"127.0.0.0/8"}}, "[::1]:80", KindLoopback, "::1/128"},
		{"an IPv6 range denied", Options{Deny: []string{"fd00::/8"}, Allow: []string{"fd00:1::/32"}}, "[fd00:2::1]:443", KindDenied, "fd00::/8"},
		{"an IPv6 range carved out", Options{Deny: []string{"fd00::/8"}, Allow: []string{"fd00:1::/32"}}, "[fd00:1::1]:443", "", ""},
		{"an IPv4-mapped range is the IPv4 range", Options{Deny: []string{"::ffff:10.0.0.0/104"}}, "10.0.0.1:443", KindDenied, "10.0.0.0/8"},
		{"a denied address in NAT64 form", Options{Deny: []string{"10.0.0.0/8"}}, "[64:ff9b::a00:1]:443", KindDenied, "10.0.0.0/8"},
		{"local upstreams allowed: loopback", Options{AllowLocal: true}, "127.0.0.1:80", "", ""},
		{"local upstreams allowed: metadata", Options{AllowLocal: true}, "169.254.169.254:80", "", ""},
		{"local upstreams allowed: a denied range still", Options{AllowLocal: true, Deny: []string{"10.0.0.0/8"}}, "10.0.0.1:80", KindDenied, "10.0.0.0/8"},
		{"local upstreams allowed: a denied range in NAT64 form still", Options{AllowLocal: true, Deny: []string{"10.0.0.0/8"}}, "[64:ff9b::a00:1]:80", KindDenied, "10.0.0.0/8"},
		{"a local-use NAT64 prefix named", Options{NAT64Prefixes: []string{"64:ff9b:1::/96"}}, "[64:ff9b:1::a9fe:a9fe]:80", KindMetadata, "169.254.169.254/32"},
		{"a local-use NAT64 prefix named, a public address", Options{NAT64Prefixes: []string{"64:ff9b:1::/96"}}, "[64:ff9b:1::cb00:7107]:80", "", ""},
		// RFC 6052's examples of 192.0.2.33, at every prefix length.
		{"NAT64 /32", Options{Deny: []string{"192.0.2.33"}, NAT64Prefixes: []string{"2001:db8::/32"}}, "[2001:db8:c000:221::]:80", KindDenied, "192.0.2.33/32"},
		{"NAT64 /40", Options{Deny: []string{"192.0.2.33"}, NAT64Prefixes: []string{"2001:db8:100::/40"}}, "[2001:db8:1c0:2:21::]:80", KindDenied, "192.0.2.33/32"},
		{"NAT64 /48", Options{Deny: []string{"192.0.2.33"}, NAT64Prefixes: []string{"2001:db8:122::/48"}}, "[2001:db8:122:c000:2:2100::]:80", KindDenied, "192.0.2.33/32"},
		{"NAT64 /56", Options{Deny: []string{"192.0.2.33"}, NAT64Prefixes: []string{"2001:db8:122:300::/56"}}, "[2001:db8:122:3c0:0:221::]:80", KindDenied, "192.0.2.33/32"},
		{"NAT64 /64", Options{Deny: []string{"192.0.2.33"}, NAT64Prefixes: []string{"2001:db8:122:344::/64"}}, "[2001:db8:122:344:c0:2:2100::]:80", KindDenied, "192.0.2.33/32"},
		{"NAT64 /96", Options{Deny: []string{"192.0.2.33"}, NAT64Prefixes: []string{"2001:db8:122:344::/96"}}, "[2001:db8:122:344::192.0.2.33]:80", KindDenied, "192.0.2.33/32"},
		{"NAT64 prefix not named", Options{Deny: []string{"192.0.2.33"}}, "[2001:db8:122:344::192.0.2.33]:80", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Check(tt.address)
			var e *NotAllowedError
			switch {
			case tt.kind == "" && err != nil:
				t.Errorf("%s: refused: %v", tt.address, err)
			case tt.kind == "":
			case !errors.As(err, &e):
				t.Errorf("%s: err %v, want a refusal", tt.address, err)
			case e.Kind != tt.kind || e.Range.String() != tt.rng:
				t.Errorf("%s: refused as %s in %s, want %s in %s: %v", tt.address, e.Kind, e.Range, tt.kind, tt.rng, err)
			case !strings.Contains(err.Error(), "--egress-allow="):
				t.Errorf("%s: %v does not say how to lift it", tt.address, err)
			}
		})
	}
}

func TestNotAllowedErrorMessage(t *testing.T) {
	p, err := New(Options{Deny: []string{"10.0.0.0/8"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ address, want string }{
		{"127.0.0.1:80", "127.0.0.1:80 is a loopback address (127.0.0.0/8), which upstreams may not use: " +
			"the manager refuses it unless run with --egress-allow=127.0.0.0/8 or --allow-local-upstreams"},
		{"[64:ff9b::a9fe:a9fe]:80", "[64:ff9b::a9fe:a9fe]:80 is the NAT64 form of 169.254.169.254, a cloud metadata address (169.254.169.254/32), " +
			"which upstreams may not use: the manager refuses it unless run with --egress-allow=169.254.169.254/32 or --allow-local-upstreams"},
		{"10.1.2.3:443", "10.1.2.3:443 is a denied address (10.0.0.0/8 of --egress-deny), which upstreams may not use: " +
			"the manager refuses it unless run with --egress-allow=10.1.2.3 or another range, /8 or narrower, that holds it"},
		{"[64:ff9b::a01:203]:443", "[64:ff9b::a01:203]:443 is the NAT64 form of 10.1.2.3, a denied address (10.0.0.0/8 of --egress-deny), " +
			"which upstreams may not use: the manager refuses it unless run with --egress-allow=10.1.2.3 or another range, /8 or narrower, that holds it"},
	}
	for _, tt := range tests {
		if err := p.Check(tt.address); err == nil || err.Error() != tt.want {
			t.Errorf("%s:\n got %v\nwant %s", tt.address, err, tt.want)
		}
	}
}

func TestNewRefusesBadValues(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"a word", Options{Deny: []string{"internal"}}, "--egress-deny=internal: want an IP range"},
		{"a prefix too long", Options{Allow: []string{"10.0.0.0/33"}}, "--egress-allow=10.0.0.0/33: want an IP range"},
		{"bits past the prefix", Options{Deny: []string{"10.1.2.3/8"}}, "--egress-deny=10.1.2.3/8: the address has bits set past /8; the range is 10.0.0.0/8"},
		{"a zone", Options{Deny: []string{"fe80::1%eth0"}}, "--egress-deny=fe80::1%eth0: want an IP range"},
		{"a NAT64 prefix of IPv4", Options{NAT64Prefixes: []string{"10.0.0.0/8"}}, "--egress-nat64-prefix=10.0.0.0/8: want an IPv6 prefix"},
		{"a NAT64 prefix of another length", Options{NAT64Prefixes: []string{"64:ff9b:1::/80"}}, "--egress-nat64-prefix=64:ff9b:1::/80: a NAT64 prefix is /32, /40, /48, /56, /64 or /96 long"},
	}
	for _, tt := range tests {
		if _, err := New(tt.opts); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error saying %q", tt.name, err, tt.want)
		}
	}
	p, err := New(Options{Deny: []string{"10.0.0.0/8, 192.168.0.0/16", " fd00::1 "}})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.0.0.1:80", "192.168.1.1:80", "[fd00::1]:80"} {
		if !IsNotAllowed(p.Check(a)) {
			t.Errorf("%s is allowed, with comma-separated and spaced values denying it", a)
		}
	}
}

// Without the opt-in the environment's proxy is ignored; with it, a request goes to the proxy
// only once its upstream's addresses pass the rules, and the proxy itself is no upstream.
func TestProxy(t *testing.T) {
	proxy := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "direct.example")

	if Default(false).Proxy() != nil {
		t.Error("the default policy uses the environment's proxy")
	}
	p, err := New(Options{ProxyFromEnvironment: true, Deny: []string{"203.0.113.0/24"}})
	if err != nil {
		t.Fatal(err)
	}
	proxyFor := p.Proxy()
	names := map[string][]netip.Addr{
		"public.example":   {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
		"metadata.example": {netip.MustParseAddr("169.254.169.254")},
		"mixed.example":    {netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("::ffff:127.0.0.1")},
	}
	defer func(l func(context.Context, string, string) ([]netip.Addr, error)) { lookup = l }(lookup)
	lookup = func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if ips, ok := names[host]; ok {
			return ips, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	tests := []struct {
		url   string
		proxy bool   // the request goes to the proxy
		kind  string // or is refused
	}{
		{"http://192.0.2.10/v1/models", true, ""},
		{"https://[2001:db8::10]/v1/models", true, ""},
		{"http://100.100.100.200/latest/meta-data/", false, KindMetadata},
		{"http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", false, KindMetadata},
		{"http://203.0.113.7/v1/models", false, KindDenied},
		{"http://[64:ff9b::7f00:1]/v1/models", false, KindLoopback},
		{"http://public.example:8000/v1/models", true, ""},
		{"http://metadata.example/latest/meta-data/", false, KindMetadata},
		{"http://mixed.example/v1/models", false, KindLoopback}, // one address of several
		{proxy.URL + "/v1/models", false, KindProxy},
		{"http://direct.example/v1/models", false, ""}, // NO_PROXY: dialled, and checked, directly
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		got, err := proxyFor(&http.Request{URL: u})
		var e *NotAllowedError
		switch {
		case tt.kind == "" && !tt.proxy && err == nil && got == nil:
		case tt.kind != "" && (!errors.As(err, &e) || e.Kind != tt.kind):
			t.Errorf("%s: proxy %v, err %v; want a %s refusal", tt.url, got, err, tt.kind)
		case tt.kind != "":
			var op *net.OpError
			if !errors.As(err, &op) || op.Op != "dial" {
				t.Errorf("%s: %v is no failed dial: the gateway would not know the request went nowhere", tt.url, err)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.url, err)
		case tt.proxy != (got != nil && got.Host == proxy.Listener.Addr().String()):
			t.Errorf("%s: proxy %v, want the proxy: %v", tt.url, got, tt.proxy)
		}
	}

	// The proxy is dialled although it listens on loopback; other loopback ports are not.
	c, err := p.Dial(context.Background(), "tcp", proxy.Listener.Addr().String(), time.Second)
	if err != nil {
		t.Fatalf("dial the proxy: %v", err)
	}
	c.Close()
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer other.Close()
	if _, err := p.Dial(context.Background(), "tcp", other.Listener.Addr().String(), time.Second); !IsNotAllowed(err) {
		t.Errorf("dial another loopback address: %v, want a refusal", err)
	}
}

func TestNAT64Embedded(t *testing.T) {
	want := netip.MustParseAddr("192.0.2.33")
	for bits, addr := range map[int]string{32: "2001:db8:c000:221::", 40: "2001:db8:1c0:2:21::", 48: "2001:db8:122:c000:2:2100::",
		56: "2001:db8:122:3c0:0:221::", 64: "2001:db8:122:344:c0:2:2100::", 96: "2001:db8:122:344::192.0.2.33"} {
		if got := nat64Embedded(netip.MustParseAddr(addr).As16(), bits); got != want {
			t.Errorf("/%d %s: %s, want %s", bits, addr, got, want)
		}
	}
}
