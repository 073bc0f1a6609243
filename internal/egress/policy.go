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
	"cmp"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// builtin are the ranges refused unless the manager runs with AllowLocalFlag. Pod and Service
// addresses (RFC 1918, the carrier-grade NAT range 100.64.0.0/10 some CNIs use, IPv6 unique
// local addresses) stay allowed: where a metadata service sits inside such a range, only its
// address is refused.
var builtin = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), KindUnspecified}, // "this network": 0.0.0.0 reaches the local host
	{netip.MustParsePrefix("127.0.0.0/8"), KindLoopback},
	{netip.MustParsePrefix("169.254.0.0/16"), KindLinkLocal},
	{netip.MustParsePrefix("224.0.0.0/24"), KindLinkLocal},      // link-local multicast
	{netip.MustParsePrefix("169.254.169.254/32"), KindMetadata}, // AWS, GCP, Azure, OCI and most others
	{netip.MustParsePrefix("169.254.170.2/32"), KindMetadata},   // AWS ECS task credentials
	{netip.MustParsePrefix("169.254.170.23/32"), KindMetadata},  // EKS Pod Identity Agent
	{netip.MustParsePrefix("100.100.100.200/32"), KindMetadata}, // Alibaba Cloud, inside 100.64.0.0/10
	{netip.MustParsePrefix("168.63.129.16/32"), KindMetadata},   // Azure WireServer, the host of IMDS
	{netip.MustParsePrefix("192.0.0.192/32"), KindMetadata},     // Oracle Cloud's legacy metadata address
	{netip.MustParsePrefix("::/128"), KindUnspecified},
	{netip.MustParsePrefix("::1/128"), KindLoopback},
	{netip.MustParsePrefix("fe80::/10"), KindLinkLocal},
	{netip.MustParsePrefix("ff02::/16"), KindLinkLocal},          // link-local multicast
	{netip.MustParsePrefix("fd00:ec2::254/128"), KindMetadata},   // AWS IMDS over IPv6, inside fc00::/7
	{netip.MustParsePrefix("fd00:ec2::23/128"), KindMetadata},    // EKS Pod Identity Agent over IPv6
	{netip.MustParsePrefix("fd20:ce::254/128"), KindMetadata},    // GCP metadata over IPv6
	{netip.MustParsePrefix("fe80::a9fe:a9fe/128"), KindMetadata}, // OpenStack metadata over IPv6
}

// The IPv6 forms that stand for an IPv4 address, where a translator or a tunnel on the way
// turns the connection into one to that address. IPv4-mapped addresses (::ffff:0:0/96) are
// the IPv4 address itself to a dual-stack socket and are checked as such.
var (
	compatible = netip.MustParsePrefix("::/96")        // IPv4-compatible, deprecated (RFC 4291)
	nat64      = netip.MustParsePrefix("64:ff9b::/96") // the NAT64 well-known prefix (RFC 6052)
	sixToFour  = netip.MustParsePrefix("2002::/16")    // 6to4 (RFC 3056)
	teredo     = netip.MustParsePrefix("2001::/32")    // Teredo (RFC 4380)
)

// Options configure a Policy; the zero value is the manager's default.
type Options struct {
	// AllowLocal lifts the built-in denied ranges (AllowLocalFlag); Deny still applies.
	AllowLocal bool
	// Deny are more ranges to refuse (DenyFlag): CIDRs such as 10.0.0.0/8, or single
	// addresses.
	Deny []string
	// Allow are ranges to connect to although a denied range holds them (AllowFlag). The
	// narrowest range that holds an address decides, and an allowed range wins over a denied
	// one of the same size: allowing 10.20.0.0/16 carves it out of a denied 10.0.0.0/8, while
	// allowing 100.64.0.0/10 leaves 100.100.100.200/32 refused.
	Allow []string
	// NAT64Prefixes are the NAT64 prefixes of the cluster's network besides the well-known
	// 64:ff9b::/96 (NAT64Flag), such as the local-use 64:ff9b:1::/96: the IPv4 address their
	// IPv6 addresses embed is checked too. Lengths 32, 40, 48, 56, 64 and 96 (RFC 6052).
	NAT64Prefixes []string
	// ProxyFromEnvironment lets connections use the proxy named by HTTP_PROXY and HTTPS_PROXY
	// (and skip it for NO_PROXY), read when the Policy is made (ProxyFlag). Without it the
	// environment's proxy is ignored.
	ProxyFromEnvironment bool
}

// Policy decides which addresses the manager may connect to for Providers, and how: see
// Check, Dial and Proxy. It is safe for concurrent use.
type Policy struct {
	v4, v6 []rule         // narrowest first; at equal size, an allow first
	nat64  []netip.Prefix // besides the well-known prefix
	proxy  func(*url.URL) (*url.URL, error)
	// proxies are the host:port of the environment's proxies, as an http.Transport dials them.
	proxies []string
}

type rule struct {
	prefix netip.Prefix
	allow  bool
	kind   string // of a denied range
}

var (
	defaultPolicy = mustNew(Options{})
	localPolicy   = mustNew(Options{AllowLocal: true})
)

// Default returns the policy of a manager run without egress flags (allowLocal false), or
// with AllowLocalFlag only.
func Default(allowLocal bool) *Policy {
	if allowLocal {
		return localPolicy
	}
	return defaultPolicy
}

func mustNew(o Options) *Policy {
	p, err := New(o)
	if err != nil {
		panic(err)
	}
	return p
}

// New returns the policy of o, or an error naming the flag whose value is wrong.
func New(o Options) (*Policy, error) {
	p := &Policy{}
	if !o.AllowLocal {
		for _, b := range builtin {
			p.add(rule{prefix: b.prefix, kind: b.kind})
		}
	}
	deny, err := ParsePrefixes(DenyFlag, o.Deny)
	if err != nil {
		return nil, err
	}
	for _, d := range deny {
		p.add(rule{prefix: d, kind: KindDenied})
	}
	allow, err := ParsePrefixes(AllowFlag, o.Allow)
	if err != nil {
		return nil, err
	}
	for _, a := range allow {
		p.add(rule{prefix: a, allow: true})
	}
	byNarrowest := func(a, b rule) int {
		if c := cmp.Compare(b.prefix.Bits(), a.prefix.Bits()); c != 0 {
			return c
		}
		switch {
		case a.allow && !b.allow:
			return -1
		case b.allow && !a.allow:
			return 1
		}
		return 0
	}
	slices.SortStableFunc(p.v4, byNarrowest)
	slices.SortStableFunc(p.v6, byNarrowest)

	prefixes, err := ParsePrefixes(NAT64Flag, o.NAT64Prefixes)
	if err != nil {
		return nil, err
	}
	for _, n := range prefixes {
		switch {
		case !n.Addr().Is6():
			return nil, fmt.Errorf("%s=%s: want an IPv6 prefix, such as 64:ff9b:1::/96", NAT64Flag, n)
		case !slices.Contains([]int{32, 40, 48, 56, 64, 96}, n.Bits()):
			return nil, fmt.Errorf("%s=%s: a NAT64 prefix is /32, /40, /48, /56, /64 or /96 long (RFC 6052)", NAT64Flag, n)
		}
	}
	p.nat64 = prefixes

	if o.ProxyFromEnvironment {
		p.setProxyFromEnvironment()
	}
	return p, nil
}

func (p *Policy) add(r rule) {
	if r.prefix.Addr().Is4() {
		p.v4 = append(p.v4, r)
	} else {
		p.v6 = append(p.v6, r)
	}
}

// ParsePrefixes parses the values of flag: IP ranges in CIDR notation, or single addresses,
// comma-separated or not. An IPv4-mapped IPv6 range is the IPv4 range it maps.
func ParsePrefixes(flag string, values []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, value := range values {
		for v := range strings.SplitSeq(value, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			var p netip.Prefix
			if strings.Contains(v, "/") {
				var err error
				if p, err = netip.ParsePrefix(v); err != nil {
					return nil, fmt.Errorf("%s=%s: want an IP range such as 10.0.0.0/8 or fd00::/8, or one address: %w", flag, v, err)
				}
				if p.Masked() != p {
					return nil, fmt.Errorf("%s=%s: the address has bits set past /%d; the range is %s", flag, v, p.Bits(), p.Masked())
				}
			} else {
				a, err := netip.ParseAddr(v)
				if err != nil || a.Zone() != "" {
					return nil, fmt.Errorf("%s=%s: want an IP range such as 10.0.0.0/8 or fd00::/8, or one address without a zone", flag, v)
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// Check returns a *NotAllowedError when the built-in rules refuse address (host:port, with a
// literal IP), and nil otherwise: Default(false).Check.
func Check(address string) error { return defaultPolicy.Check(address) }

// Check returns a *NotAllowedError when the policy refuses address (host:port, with a literal
// IP), and nil otherwise.
func (p *Policy) Check(address string) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("egress: %q is not an IP address and port: %w", address, err)
	}
	return p.check(address, ap.Addr())
}

// checks reports whether the policy can refuse any address at all.
func (p *Policy) checks() bool { return len(p.v4)+len(p.v6) > 0 }

// check refuses ip when the narrowest range that holds it, or the IPv4 address it stands
// for, is denied. address names it in the error.
func (p *Policy) check(address string, ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	if r := p.match(ip); r != nil && !r.allow {
		return &NotAllowedError{Address: address, Kind: r.kind, Range: r.prefix}
	}
	if v4, form := p.embedded(ip); v4.IsValid() {
		if r := p.match(v4); r != nil && !r.allow {
			return &NotAllowedError{Address: address, Kind: r.kind, Range: r.prefix, Embedded: v4, Form: form}
		}
	}
	return nil
}

// match returns the narrowest rule whose range holds ip, or nil.
func (p *Policy) match(ip netip.Addr) *rule {
	rules := p.v6
	if ip.Is4() {
		rules = p.v4
	}
	for i := range rules {
		if rules[i].prefix.Contains(ip) {
			return &rules[i]
		}
	}
	return nil
}

// embedded returns the IPv4 address that the IPv6 address ip stands for, and the name of its
// form; an invalid address when it stands for none. The local-use NAT64 prefix 64:ff9b:1::/48
// and network-specific prefixes are decoded only when named in Options.NAT64Prefixes: their
// length, and so where the IPv4 address sits, is the operator's choice.
func (p *Policy) embedded(ip netip.Addr) (netip.Addr, string) {
	if !ip.Is6() {
		return netip.Addr{}, ""
	}
	b := ip.As16()
	switch {
	case nat64.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), "NAT64"
	case compatible.Contains(ip):
		return netip.AddrFrom4([4]byte(b[12:16])), "IPv4-compatible"
	case sixToFour.Contains(ip):
		return netip.AddrFrom4([4]byte(b[2:6])), "6to4"
	case teredo.Contains(ip):
		// The client's address, inverted (RFC 4380, section 4).
		return netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]}), "Teredo"
	}
	for _, n := range p.nat64 {
		if n.Contains(ip) {
			return nat64Embedded(b, n.Bits()), "NAT64"
		}
	}
	return netip.Addr{}, ""
}

// nat64Embedded reads the IPv4 address behind a NAT64 prefix of bits (RFC 6052, section 2.2):
// the 32 bits after the prefix, skipping bits 64 to 71.
func nat64Embedded(b [16]byte, bits int) netip.Addr {
	var v4 [4]byte
	for i, n := bits/8, 0; n < 4; i++ {
		if i == 8 {
			continue
		}
		v4[n] = b[i]
		n++
	}
	return netip.AddrFrom4(v4)
}
