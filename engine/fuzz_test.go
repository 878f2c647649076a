package engine

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
)

// FuzzHandle: whatever the attacker-shaped fields hold, Handle never
// panics and bans nothing but the event's true source.
func FuzzHandle(f *testing.F) {
	f.Add("InvalidAccountID", "PJSIP", `x",RemoteAddress="IPV4/UDP/6.6.6.6/5060`, "1-1@x", "", []byte{203, 0, 113, 13}, uint16(5090), uint8(6))
	f.Add("SuccessfulAuth", "", "", "1-4332@127.0.0.13", "missing Service", []byte{203, 0, 113, 13}, uint16(5100), uint8(1))
	f.Add("ChallengeSent", "PJSIP", "<unknown>", "", "", []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(5077), uint8(30))
	f.Fuzz(func(t *testing.T, typ, service, account, session, suspicion string, ip []byte, port uint16, repeat uint8) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		cfg := testConfig()
		cfg.GeoMode = GeoStrict
		fw := dryrun.New(dryrun.Options{})
		e, err := New(cfg, Deps{Firewall: fw, Geo: testGeo, Resolver: noDNS{}, HostAddrs: []netip.Addr{},
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ev := ami.SecurityEvent{Type: typ, Service: service, AccountID: account, SessionID: session, Suspicion: suspicion,
			Remote: ami.Address{Transport: "UDP", AddrPort: netip.AddrPortFrom(a, port)}}
		for i := 0; i < int(repeat%40)+1; i++ {
			e.Handle(context.Background(), ev)
		}
		es, _ := fw.List(context.Background(), firewall.SetBan)
		for _, en := range es {
			if en.Prefix.Addr() != a.Unmap() {
				t.Fatalf("banned %s for an event from %s", en.Prefix, a)
			}
		}
		if a.Unmap().IsLoopback() && len(es) > 0 {
			t.Fatal("banned loopback")
		}
	})
}
