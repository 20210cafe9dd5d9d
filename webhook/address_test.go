package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// ianaSpecialPurpose is every entry of IANA's IPv4 and IPv6
// Special-Purpose Address Registries (iana-ipv4-special-registry,
// iana-ipv6-special-registry, as published in 2025), copied here by hand
// and kept apart from the code's own table, so the test checks it.
var ianaSpecialPurpose = []struct{ prefix, name string }{
	// IPv4
	{"0.0.0.0/8", "This network"},
	{"0.0.0.0/32", "This host on this network"},
	{"10.0.0.0/8", "Private-Use"},
	{"100.64.0.0/10", "Shared Address Space"},
	{"127.0.0.0/8", "Loopback"},
	{"169.254.0.0/16", "Link Local"},
	{"172.16.0.0/12", "Private-Use"},
	{"192.0.0.0/24", "IETF Protocol Assignments"},
	{"192.0.0.0/29", "IPv4 Service Continuity Prefix"},
	{"192.0.0.8/32", "IPv4 dummy address"},
	{"192.0.0.9/32", "Port Control Protocol Anycast"},
	{"192.0.0.10/32", "Traversal Using Relays around NAT Anycast"},
	{"192.0.0.170/32", "NAT64/DNS64 Discovery"},
	{"192.0.0.171/32", "NAT64/DNS64 Discovery"},
	{"192.0.2.0/24", "Documentation (TEST-NET-1)"},
	{"192.31.196.0/24", "AS112-v4"},
	{"192.52.193.0/24", "AMT"},
	{"192.88.99.0/24", "Deprecated (6to4 Relay Anycast)"},
	{"192.168.0.0/16", "Private-Use"},
	{"192.175.48.0/24", "Direct Delegation AS112 Service"},
	{"198.18.0.0/15", "Benchmarking"},
	{"198.51.100.0/24", "Documentation (TEST-NET-2)"},
	{"203.0.113.0/24", "Documentation (TEST-NET-3)"},
	{"240.0.0.0/4", "Reserved"},
	{"255.255.255.255/32", "Limited Broadcast"},
	// IPv6
	{"::1/128", "Loopback Address"},
	{"::/128", "Unspecified Address"},
	{"::ffff:0:0/96", "IPv4-mapped Address"},
	{"64:ff9b::/96", "IPv4-IPv6 Translat."},
	{"64:ff9b:1::/48", "IPv4-IPv6 Translat."},
	{"100::/64", "Discard-Only Address Block"},
	{"100:0:0:1::/64", "Dummy IPv6 Prefix"},
	{"2001::/23", "IETF Protocol Assignments"},
	{"2001::/32", "TEREDO"},
	{"2001:1::1/128", "Port Control Protocol Anycast"},
	{"2001:1::2/128", "Traversal Using Relays around NAT Anycast"},
	{"2001:1::3/128", "DNS-SD Service Registration Protocol Anycast"},
	{"2001:2::/48", "Benchmarking"},
	{"2001:3::/32", "AMT"},
	{"2001:4:112::/48", "AS112-v6"},
	{"2001:10::/28", "Deprecated (previously ORCHID)"},
	{"2001:20::/28", "ORCHIDv2"},
	{"2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix"},
	{"2001:db8::/32", "Documentation"},
	{"2002::/16", "6to4"},
	{"2620:4f:8000::/48", "Direct Delegation AS112 Service"},
	{"3fff::/20", "Documentation"},
	{"5f00::/16", "Segment Routing (SRv6) SIDs"},
	{"fc00::/7", "Unique-Local"},
	{"fe80::/10", "Link-Local Unicast"},
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// guardedDial dials addr through a dialer with the webhook guard: the
// guard runs after the socket is made and before connect(2), so a
// refused address is never sent a packet.
func guardedDial(addr netip.Addr) error {
	d := &net.Dialer{Timeout: time.Second, Control: publicAddressOnly}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(addr, 9).String())
	if c != nil {
		c.Close()
	}
	return err
}

// TestSpecialPurposeAddressesRefused checks the first and the last
// address of every registry entry, and their IPv4-mapped forms, against
// the classifier and through a dialer with the dial-time guard.
func TestSpecialPurposeAddressesRefused(t *testing.T) {
	for _, e := range ianaSpecialPurpose {
		p := netip.MustParsePrefix(e.prefix)
		for _, a := range []netip.Addr{p.Masked().Addr(), lastAddr(p)} {
			forms := []netip.Addr{a}
			if a.Is4() {
				forms = append(forms, netip.AddrFrom16(a.As16()))
			}
			for _, f := range forms {
				if isPublicAddress(f) {
					t.Errorf("%s (%s, %s): classified public", f, e.prefix, e.name)
				}
				if err := guardedDial(f); !errors.Is(err, errPrivateAddress) {
					t.Errorf("%s (%s, %s): dial got %v, want it refused", f, e.prefix, e.name, err)
				}
			}
		}
	}
}

// TestPublicAddressesAllowed: addresses just outside the registry's
// blocks, and ordinary public ones, are not refused by the classifier
// (nothing is dialled).
func TestPublicAddressesAllowed(t *testing.T) {
	for _, s := range []string{
		"1.1.1.1", "8.8.8.8", "93.184.216.34",
		"100.63.255.255", "100.128.0.0", // around shared address space
		"198.17.255.255", "198.20.0.0", // around benchmarking
		"192.0.1.255", "192.0.3.0", "203.0.112.255", "203.0.114.0",
		"223.255.255.255",
		"2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
		"2001:200::1",           // just past 2001::/23
		"2001:db7:ffff:ffff::1", // just before documentation
		"::ffff:8.8.8.8",        // mapped public IPv4
	} {
		if a := netip.MustParseAddr(s); !isPublicAddress(a) {
			t.Errorf("%s: refused, want allowed", s)
		}
	}
	for _, s := range []string{"224.0.0.1", "239.255.255.255", "ff02::1", "::", "::2", "4000::1", "ff0e::1"} {
		if isPublicAddress(netip.MustParseAddr(s)) {
			t.Errorf("%s: allowed, want refused (multicast or not global unicast)", s)
		}
	}
}

// fakeDNS answers every A question with addr, on a UDP port of loopback.
func fakeDNS(t *testing.T, addr netip.Addr) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
					dnsmessage.AResource{A: addr.As4()})
			}
			msg, _ := b.Finish()
			pc.WriteTo(msg, from)
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// TestWebhookNameResolvingToSpecialAddress: a webhook host whose name
// resolves to a benchmarking address (the 198.18.0.1) is refused
// when connecting; the fake resolver keeps the test off the network.
func TestWebhookNameResolvingToSpecialAddress(t *testing.T) {
	for _, addr := range []string{"198.18.0.1", "192.0.0.1", "100.64.0.1"} {
		d := NewDeliverer(nil, Config{Resolver: fakeDNS(t, netip.MustParseAddr(addr))})
		resp, err := d.client.Post("http://hooks.customer.example:8080/h", "application/json", strings.NewReader("{}"))
		if resp != nil {
			resp.Body.Close()
		}
		if !errors.Is(err, errPrivateAddress) {
			t.Errorf("a name resolving to %s: got %v, want it refused", addr, err)
		}
	}
}
