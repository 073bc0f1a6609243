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
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/infergate/infergate/internal/egress"
)

// The errors of an attempt, as http.Transport returns them, and whether the request provably
// did not run upstream.
func TestFailureOf(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8000}
	tests := []struct {
		name   string
		err    error
		reason string
		safe   bool
	}{
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, reasonConnect, true},
		{"connect timeout", &net.OpError{Op: "dial", Net: "tcp", Addr: addr, Err: os.ErrDeadlineExceeded}, reasonConnect, true},
		{"address not allowed", &net.OpError{Op: "dial", Net: "tcp", Err: &egress.NotAllowedError{Address: "127.0.0.1:80", Kind: "loopback"}}, reasonConnect, true},
		{"kept-alive connection closed while writing the body", &net.OpError{Op: "readfrom", Net: "tcp", Addr: addr,
			Err: &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}}, reasonSend, true},
		{"reset while writing headers", &net.OpError{Op: "write", Net: "tcp", Addr: addr, Err: os.NewSyscallError("write", syscall.ECONNRESET)}, reasonSend, true},
		{"reset while reading the answer", &net.OpError{Op: "read", Net: "tcp", Addr: addr, Err: os.NewSyscallError("read", syscall.ECONNRESET)}, reasonReset, false},
		{"closed before the answer", fmt.Errorf("net/http: %w", io.ErrUnexpectedEOF), reasonReset, false},
		{"no response headers in time", context.DeadlineExceeded, reasonTimeout, false},
		{"something else", errors.New("http: server gave HTTP response to HTTPS client"), reasonReset, false},
	}
	for _, tt := range tests {
		if reason, safe := failureOf(tt.err); reason != tt.reason || safe != tt.safe {
			t.Errorf("%s: %s, safe %v; want %s, %v", tt.name, reason, safe, tt.reason, tt.safe)
		}
	}
}
