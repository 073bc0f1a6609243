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
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// The built-in rules, on every kind of address they refuse or let through.
func TestCheck(t *testing.T) {
	tests := []struct {
		address string
		kind    string // empty: allowed
		rng     string // the range the refusal names
	}{
		{"127.0.0.1:80", "loopback", "127.0.0.0/8"},
		{"127.3.4.5:8000", "loopback", "127.0.0.0/8"},
		{"[::1]:443", "loopback", "::1/128"},
		{"[::ffff:127.0.0.1]:80", "loopback", "127.0.0.0/8"},
		{"169.254.1.1:80", "link-local", "169.254.0.0/16"},
		{"[fe80::1]:80", "link-local", "fe80::/10"},
		{"[fe80::1%eth0]:80", "link-local", "fe80::/10"},
		{"0.0.0.0:8000", "unspecified", "0.0.0.0/8"},
		{"0.1.2.3:8000", "unspecified", "0.0.0.0/8"},
		{"[::]:8000", "unspecified", "::/128"},

		// Cloud metadata services.
		{"169.254.169.254:80", "cloud metadata", "169.254.169.254/32"},
		{"[::ffff:169.254.169.254]:80", "cloud metadata", "169.254.169.254/32"},
		{"169.254.170.2:80", "cloud metadata", "169.254.170.2/32"},
		{"169.254.170.23:80", "cloud metadata", "169.254.170.23/32"},
		{"[fd00:ec2::254]:80", "cloud metadata", "fd00:ec2::254/128"},
		{"[fd00:ec2::23]:80", "cloud metadata", "fd00:ec2::23/128"},
		{"[fd20:ce::254]:80", "cloud metadata", "fd20:ce::254/128"},
		{"100.100.100.200:80", "cloud metadata", "100.100.100.200/32"},
		{"168.63.129.16:80", "cloud metadata", "168.63.129.16/32"},
		{"168.63.129.16:32526", "cloud metadata", "168.63.129.16/32"},
		{"192.0.0.192:80", "cloud metadata", "192.0.0.192/32"},
		{"[fe80::a9fe:a9fe]:80", "cloud metadata", "fe80::a9fe:a9fe/128"},

		// IPv6 addresses that stand for a refused IPv4 address.
		{"[64:ff9b::7f00:1]:80", "loopback", "127.0.0.0/8"},
		{"[64:ff9b::a9fe:a9fe]:80", "cloud metadata", "169.254.169.254/32"},
		{"[64:ff9b::100.100.100.200]:80", "cloud metadata", "100.100.100.200/32"},
		{"[64:ff9b::a9fe:101]:80", "link-local", "169.254.0.0/16"},
		{"[::127.0.0.1]:80", "loopback", "127.0.0.0/8"},
		{"[::a9fe:a9fe]:80", "cloud metadata", "169.254.169.254/32"},
		{"[2002:7f00:1::]:80", "loopback", "127.0.0.0/8"},
		{"[2002:a9fe:a9fe::1]:80", "cloud metadata", "169.254.169.254/32"},
		{"[2001:0:4136:e378:8000:63bf:80ff:fffe]:80", "loopback", "127.0.0.0/8"},              // Teredo, client 127.0.0.1
		{"[2001:0:4136:e378:8000:63bf:5601:5601]:80", "cloud metadata", "169.254.169.254/32"}, // Teredo, client 169.254.169.254

		// Pod, Service and public addresses.
		{"10.96.0.10:443", "", ""},
		{"172.16.0.1:443", "", ""},
		{"192.168.1.20:8000", "", ""},
		{"100.64.0.1:8000", "", ""},
		{"100.100.100.201:8000", "", ""},
		{"203.0.113.7:443", "", ""},
		{"[::ffff:10.0.0.1]:443", "", ""},
		{"[2001:db8::1]:443", "", ""},
		{"[fd00::1]:443", "", ""},
		{"[fd00:ec2::1]:443", "", ""},
		{"[64:ff9b::cb00:7107]:443", "", ""},                   // NAT64 of 203.0.113.7
		{"[2002:cb00:7107::1]:443", "", ""},                    // 6to4 of 203.0.113.7
		{"[64:ff9b:1::7f00:1]:443", "", ""},                    // local-use NAT64: decoded only when named
		{"[2001:0:4136:e378:8000:63bf:34ff:8ef8]:443", "", ""}, // Teredo, client 203.0.113.7
	}
	for _, tt := range tests {
		err := Check(tt.address)
		switch {
		case tt.kind == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.address, err)
		case tt.kind != "" && (err == nil || !IsNotAllowed(err) || !strings.Contains(err.Error(), tt.kind+" address ("+tt.rng+")") ||
			!strings.Contains(err.Error(), "--allow-local-upstreams") || !strings.Contains(err.Error(), "--egress-allow="+tt.rng)):
			t.Errorf("%s: err %v, want a %s refusal naming %s and the flags that lift it", tt.address, err, tt.kind, tt.rng)
		}
	}
}

// The check runs on the resolved address: a name that resolves to loopback is refused too.
func TestDialChecksTheResolvedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		_, err := Default(false).Dial(context.Background(), "tcp", net.JoinHostPort(host, port), time.Second)
		if !IsNotAllowed(err) {
			t.Errorf("dial %s: %v, want a refusal", host, err)
		}
		c, err := Default(true).Dial(context.Background(), "tcp", net.JoinHostPort(host, port), time.Second)
		if err != nil {
			t.Errorf("dial %s with local upstreams allowed: %v", host, err)
			continue
		}
		c.Close()
	}
}

func TestHops(t *testing.T) {
	const me = "infergate-aaaaaaaaaaaa"
	tests := []struct {
		hops   []string
		looped bool
		next   string
	}{
		{nil, false, me},
		{[]string{"infergate-bbbbbbbbbbbb"}, false, "infergate-bbbbbbbbbbbb," + me},
		{[]string{"x, y", "z"}, false, "x,y,z," + me},
		{[]string{"infergate-bbbbbbbbbbbb, " + me}, true, ""},
		{[]string{me}, true, ""},
		{[]string{"a,b,c,d,e,f,g"}, false, "a,b,c,d,e,f,g," + me},
		{[]string{"a,b,c,d,e,f,g,h"}, true, ""},
		{[]string{" , ,"}, false, me},
	}
	for _, tt := range tests {
		if got := Looped(tt.hops, me); got != tt.looped {
			t.Errorf("Looped(%q) = %v, want %v", tt.hops, got, tt.looped)
		}
		if !tt.looped {
			if got := NextHops(tt.hops, me); got != tt.next {
				t.Errorf("NextHops(%q) = %q, want %q", tt.hops, got, tt.next)
			}
		}
	}
	if GatewayID("infergate-system", "infergate.inference.infergate.dev") == GatewayID("other", "infergate.inference.infergate.dev") {
		t.Error("two installations share a gateway id")
	}
}
