package webhook

import "net/netip"

// isPublicAddress reports whether a webhook may connect to ip: a global
// unicast address (IPv4 outside multicast, IPv6 in 2000::/3, the only
// block the IPv6 address space registry allocates for it) outside every
// block of IANA's special-purpose address registries. An IPv4-mapped IPv6
// address is judged as the IPv4 address it carries.
//
// The few registry blocks IANA marks globally reachable (AS112, AMT,
// ORCHIDv2, the 6to4 and Teredo relays, NAT64's well-known prefix) are
// refused too: none hosts a webhook receiver, and the translation
// prefixes would reach an IPv4 address past this check.
func isPublicAddress(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsValid() || !ip.IsGlobalUnicast() {
		return false // unspecified, loopback, multicast, link-local, broadcast
	}
	if ip.Is6() && !globalUnicast6.Contains(ip) {
		return false
	}
	for _, p := range specialPurpose() {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// globalUnicast6 is the IPv6 global unicast space; the rest of the IPv6
// space is reserved, multicast or link- and site-local.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// specialPurpose returns the blocks of IANA's IPv4 and IPv6 Special-Purpose
// Address Registries (RFC 6890 and the RFCs since) that contain more than
// the blocks they nest in: 192.0.0.0/29 is inside 192.0.0.0/24, 2001::/32
// inside 2001::/23, and so on, so those are left out.
func specialPurpose() []netip.Prefix {
	return []netip.Prefix{
		// IPv4
		netip.MustParsePrefix("0.0.0.0/8"),          // "this network" (RFC 791)
		netip.MustParsePrefix("10.0.0.0/8"),         // private use (RFC 1918)
		netip.MustParsePrefix("100.64.0.0/10"),      // shared address space, carrier-grade NAT (RFC 6598)
		netip.MustParsePrefix("127.0.0.0/8"),        // loopback
		netip.MustParsePrefix("169.254.0.0/16"),     // link local, cloud metadata (RFC 3927)
		netip.MustParsePrefix("172.16.0.0/12"),      // private use
		netip.MustParsePrefix("192.0.0.0/24"),       // IETF protocol assignments (RFC 6890)
		netip.MustParsePrefix("192.0.2.0/24"),       // documentation, TEST-NET-1 (RFC 5737)
		netip.MustParsePrefix("192.31.196.0/24"),    // AS112-v4 (RFC 7535)
		netip.MustParsePrefix("192.52.193.0/24"),    // AMT (RFC 7450)
		netip.MustParsePrefix("192.88.99.0/24"),     // 6to4 relay anycast, deprecated (RFC 7526)
		netip.MustParsePrefix("192.168.0.0/16"),     // private use
		netip.MustParsePrefix("192.175.48.0/24"),    // direct delegation AS112 (RFC 7534)
		netip.MustParsePrefix("198.18.0.0/15"),      // benchmarking (RFC 2544)
		netip.MustParsePrefix("198.51.100.0/24"),    // documentation, TEST-NET-2
		netip.MustParsePrefix("203.0.113.0/24"),     // documentation, TEST-NET-3
		netip.MustParsePrefix("240.0.0.0/4"),        // reserved (RFC 1112)
		netip.MustParsePrefix("255.255.255.255/32"), // limited broadcast (RFC 919)
		// IPv6
		netip.MustParsePrefix("::/128"),            // unspecified
		netip.MustParsePrefix("::1/128"),           // loopback
		netip.MustParsePrefix("::ffff:0:0/96"),     // IPv4-mapped (unwrapped above)
		netip.MustParsePrefix("64:ff9b::/96"),      // NAT64 well-known prefix (RFC 6052)
		netip.MustParsePrefix("64:ff9b:1::/48"),    // local-use IPv4/IPv6 translation (RFC 8215)
		netip.MustParsePrefix("100::/64"),          // discard-only (RFC 6666)
		netip.MustParsePrefix("100:0:0:1::/64"),    // dummy IPv6 prefix (RFC 9780)
		netip.MustParsePrefix("2001::/23"),         // IETF protocol assignments: Teredo, benchmarking, AMT, AS112, ORCHID... (RFC 2928)
		netip.MustParsePrefix("2001:db8::/32"),     // documentation (RFC 3849)
		netip.MustParsePrefix("2002::/16"),         // 6to4 (RFC 3056)
		netip.MustParsePrefix("2620:4f:8000::/48"), // direct delegation AS112 (RFC 7534)
		netip.MustParsePrefix("3fff::/20"),         // documentation (RFC 9637)
		netip.MustParsePrefix("5f00::/16"),         // segment routing SIDs (RFC 9602)
		netip.MustParsePrefix("fc00::/7"),          // unique local (RFC 4193)
		netip.MustParsePrefix("fe80::/10"),         // link-local unicast (RFC 4291)
	}
}
