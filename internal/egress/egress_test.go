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

func TestCheck(t *testing.T) {
	tests := []struct {
		address string
		kind    string // empty: allowed
	}{
		{"127.0.0.1:80", "loopback"},
		{"127.3.4.5:8000", "loopback"},
		{"[::1]:443", "loopback"},
		{"[::ffff:127.0.0.1]:80", "loopback"},
		{"169.254.169.254:80", "link-local"},
		{"[fe80::1]:80", "link-local"},
		{"0.0.0.0:8000", "unspecified"},
		{"[::]:8000", "unspecified"},
		{"10.96.0.10:443", ""},
		{"192.168.1.20:8000", ""},
		{"203.0.113.7:443", ""},
		{"[2001:db8::1]:443", ""},
	}
	for _, tt := range tests {
		err := Check(tt.address)
		switch {
		case tt.kind == "" && err != nil:
			t.Errorf("%s: refused: %v", tt.address, err)
		case tt.kind != "" && (err == nil || !IsNotAllowed(err) || !strings.Contains(err.Error(), tt.kind+" address") ||
			!strings.Contains(err.Error(), "--allow-local-upstreams")):
			t.Errorf("%s: err %v, want a %s refusal naming the flag", tt.address, err, tt.kind)
		}
	}
}

// The check runs on the resolved address: a name that resolves to loopback is refused too.
func TestDialerChecksTheResolvedAddress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	for _, host := range []string{"127.0.0.1", "localhost"} {
		_, err := Dialer(time.Second, false).DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
		if !IsNotAllowed(err) {
			t.Errorf("dial %s: %v, want a refusal", host, err)
		}
		c, err := Dialer(time.Second, true).DialContext(context.Background(), "tcp", net.JoinHostPort(host, port))
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
