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
	"syscall"
	"time"
)

// Dial connects to address within timeout (0: none but ctx's) when the policy allows the
// address it dials, after name resolution: the check runs in the dialer's Control hook, on
// each address tried.
func (p *Policy) Dial(ctx context.Context, network, address string, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if p.checks() {
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
