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
// upstream requests, the controllers' discovery probes and the metrics scrapes all dial
// through a Policy. Built in, loopback, link-local, unspecified and cloud metadata addresses
// (169.254.169.254 and its IPv6 and provider-specific siblings) are refused, also where an
// IPv6 address only stands for one of them (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
// Teredo); operators add ranges to refuse and carve exceptions with flags. The check runs on
// the address actually dialled, after name resolution, so that DNS cannot smuggle one in, and
// on the upstream's own addresses before a request is handed to a proxy.
package egress

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// The manager flags that shape a Policy.
const (
	// AllowLocalFlag lifts the built-in denied ranges.
	AllowLocalFlag = "--allow-local-upstreams"
	// DenyFlag adds ranges to refuse.
	DenyFlag = "--egress-deny"
	// AllowFlag carves ranges out of the denied ones.
	AllowFlag = "--egress-allow"
	// NAT64Flag names the NAT64 prefixes of the cluster's network besides 64:ff9b::/96.
	NAT64Flag = "--egress-nat64-prefix"
	// ProxyFlag lets upstream requests use the proxy of HTTP_PROXY and HTTPS_PROXY.
	ProxyFlag = "--egress-proxy-from-environment"
)

// The kinds of denied ranges, as NotAllowedError.Kind names them.
const (
	KindLoopback    = "loopback"
	KindLinkLocal   = "link-local"
	KindUnspecified = "unspecified"
	KindMetadata    = "cloud metadata"
	// KindDenied is a range of DenyFlag.
	KindDenied = "denied"
	// KindProxy is the address of the manager's own proxy, which is no upstream.
	KindProxy = "proxy"
)

// NotAllowedError is returned when a connection would reach an address that upstreams may not
// have.
type NotAllowedError struct {
	// Address is the resolved address, such as 127.0.0.1:8000.
	Address string
	// Kind names the range: KindLoopback, KindLinkLocal, KindUnspecified, KindMetadata,
	// KindDenied or KindProxy.
	Kind string
	// Range is the denied range that holds the address, or the IPv4 address it stands for.
	Range netip.Prefix
	// Embedded, when valid, is the IPv4 address that Address stands for, in the form named by
	// Form (such as "NAT64"): Range holds Embedded.
	Embedded netip.Addr
	Form     string
}

func (e *NotAllowedError) Error() string {
	if e.Kind == KindProxy {
		return fmt.Sprintf("%s is the manager's own proxy (HTTP_PROXY or HTTPS_PROXY), which is no upstream: point the Provider at the upstream itself", e.Address)
	}
	var b strings.Builder
	b.WriteString(e.Address)
	b.WriteString(" is ")
	addr := e.Address
	if e.Embedded.IsValid() {
		fmt.Fprintf(&b, "the %s form of %s, ", e.Form, e.Embedded)
		addr = e.Embedded.String()
	}
	article := "a"
	if strings.IndexByte("aeiou", e.Kind[0]) >= 0 {
		article = "an"
	}
	fmt.Fprintf(&b, "%s %s address", article, e.Kind)
	switch {
	case !e.Range.IsValid():
		fmt.Fprintf(&b, ", which upstreams may not use: the manager refuses it unless run with %s", AllowLocalFlag)
	case e.Kind == KindDenied:
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			addr = ap.Addr().WithZone("").String()
		}
		fmt.Fprintf(&b, " (%s of %s), which upstreams may not use: the manager refuses it unless run with %s=%s or another range, /%d or narrower, that holds it",
			e.Range, DenyFlag, AllowFlag, addr, e.Range.Bits())
	default:
		fmt.Fprintf(&b, " (%s), which upstreams may not use: the manager refuses it unless run with %s=%s or %s",
			e.Range, AllowFlag, e.Range, AllowLocalFlag)
	}
	return b.String()
}

// IsNotAllowed reports whether err says that a connection was refused by this package.
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
