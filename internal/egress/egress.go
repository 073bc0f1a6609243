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

// Package egress decides where the manager may connect on behalf of a Provider: the gateway's
// upstream requests and the controllers' discovery probes both dial through it. Loopback,
// link-local (cloud metadata services such as 169.254.169.254 live there) and unspecified
// addresses are refused unless explicitly allowed, and the check runs on the address actually
// dialled, after name resolution, so that DNS cannot smuggle one in.
package egress

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// AllowLocalFlag is the manager flag that lifts the restriction.
const AllowLocalFlag = "--allow-local-upstreams"

// NotAllowedError is returned when a dial targets an address that upstreams may not have.
type NotAllowedError struct {
	// Address is the resolved address, such as 127.0.0.1:8000.
	Address string
	// Kind names the range: "loopback", "link-local" or "unspecified".
	Kind string
}

func (e *NotAllowedError) Error() string {
	return fmt.Sprintf("%s is a %s address, which upstreams may not use: the manager refuses it unless run with %s", e.Address, e.Kind, AllowLocalFlag)
}

// Check returns a *NotAllowedError when address (host:port, with a literal IP) is loopback,
// link-local or unspecified, and nil otherwise.
func Check(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: %q is not an IP address and port: %w", address, err)
	}
	ip := ap.Addr().Unmap()
	kind := ""
	switch {
	case ip.IsLoopback():
		kind = "loopback"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		kind = "link-local"
	case ip.IsUnspecified():
		kind = "unspecified"
	default:
		return nil
	}
	return &NotAllowedError{Address: address, Kind: kind}
}

// Dialer returns a dialer that refuses the addresses Check refuses, unless allowLocal is set.
func Dialer(timeout time.Duration, allowLocal bool) *net.Dialer {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowLocal {
		// Control runs on each address the dialer tries, after resolution and before connect.
		d.Control = func(_, address string, _ syscall.RawConn) error { return Check(address) }
	}
	return d
}

// IsNotAllowed reports whether err says that a dial was refused by this package.
func IsNotAllowed(err error) bool {
	var e *NotAllowedError
	return errors.As(err, &e)
}

// HopHeader marks the requests the manager sends to upstreams (proxied requests and discovery
// probes) with the ids of the gateways they passed through, comma-separated. A gateway that
// receives a request carrying its own id, or more than MaxHops ids, is looking at a loop: a
// Provider whose URL leads back to a gateway.
const HopHeader = "X-Infergate-Hop"

// MaxHops is the most gateways a request may pass through, chained installations included.
const MaxHops = 8

// Looped reports whether a request whose HopHeader values are hops has passed through the
// gateway id already, or through MaxHops gateways or more.
func Looped(hops []string, id string) bool {
	n := 0
	for _, v := range hops {
		for hop := range strings.SplitSeq(v, ",") {
			switch hop = strings.TrimSpace(hop); {
			case hop == id:
				return true
			case hop != "":
				n++
			}
		}
	}
	return n >= MaxHops
}

// NextHops is the HopHeader value to send upstream: the ids a request arrived with, then id.
func NextHops(hops []string, id string) string {
	var b strings.Builder
	for _, v := range hops {
		for hop := range strings.SplitSeq(v, ",") {
			if hop = strings.TrimSpace(hop); hop != "" {
				b.WriteString(hop)
				b.WriteByte(',')
			}
		}
	}
	b.WriteString(id)
	return b.String()
}

// GatewayID names the gateways of one installation in HopHeader: the same for every replica
// (derived from what they share, such as the namespace and the leader election id), so that a
// loop through the gateway Service is seen at its second hop whichever replica it reaches.
func GatewayID(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return "infergate-" + hex.EncodeToString(h[:6])
}
