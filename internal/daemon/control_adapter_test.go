package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/internal/control"
	"github.com/sipsentry/sipsentry/state"
)

// The adapter on a real engine (dry-run firewall): the socket's requests
// become the engine's operator calls, its records and refusals come back
// with the socket's meaning and the engine's reason.
func TestControlHandlerOnEngine(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fw := dryrun.New(dryrun.Options{Mode: "enforce"})
	o := engine.DefaultOptions()
	o.Enforce, o.Push.Hosts = true, nil
	o.BanTime = 90 * time.Minute
	o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	eng, err := engine.New(o, engine.Deps{Firewall: fw, Geo: foreignGeo{}, Store: st, Resolver: noDNS{},
		HostAddrs: []netip.Addr{netip.MustParseAddr("203.0.113.200")}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	h := &controlHandler{eng: eng, enforce: true}
	a := netip.MustParseAddr("203.0.113.7")

	rec, err := h.Ban(ctx, a, control.DefaultDuration, "seen in the CDRs", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Addr != a || rec.Origin != "manual" || rec.UID == nil || *rec.UID != 1000 || rec.Monitor || rec.Offence != 1 ||
		!strings.Contains(rec.Reason, "seen in the CDRs") || rec.Until.Sub(time.Now()) < 89*time.Minute {
		t.Errorf("ban record %+v: want manual by uid 1000 for engine.ban_time (90m)", rec)
	}
	if ok, _ := fw.Contains(ctx, firewall.SetBan, a); !ok {
		t.Error("the manual ban is not in the ban set")
	}
	if _, err := h.Ban(ctx, netip.MustParseAddr("203.0.113.8"), 0, "", 0); !errors.Is(err, control.ErrInvalid) {
		t.Errorf("a ban without an end: %v, want control.ErrInvalid", err)
	}
	for addr, why := range map[string]string{
		"127.0.0.1":     "loopback",
		"203.0.113.200": "host's own address",
		"198.51.100.9":  "198.51.100.0/24",
	} {
		_, err := h.Ban(ctx, netip.MustParseAddr(addr), time.Hour, "", 0)
		if !errors.Is(err, control.ErrRefused) || !errors.Is(err, engine.ErrNeverBan) || !strings.Contains(err.Error(), why) ||
			strings.HasPrefix(err.Error(), "engine: ") {
			t.Errorf("ban %s: %v; want control.ErrRefused naming %q, without the package prefix", addr, err, why)
		}
	}

	var bans []control.BanRecord
	if err := h.Bans(ctx, time.Now(), func(b control.BanRecord) error { bans = append(bans, b); return nil }); err != nil || len(bans) != 1 || bans[0].Addr != a {
		t.Errorf("bans = %+v, %v", bans, err)
	}
	if err := h.Unban(ctx, a, 1000); err != nil {
		t.Fatal(err)
	}
	if err := h.Unban(ctx, a, 1000); !errors.Is(err, control.ErrNotBanned) {
		t.Errorf("second unban: %v, want control.ErrNotBanned", err)
	}

	held := netip.MustParseAddr("203.0.113.9")
	if _, err := h.Ban(ctx, held, time.Hour, "before the allow", 0); err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("203.0.113.0/28")
	arec, err := h.Allow(ctx, p, 2*time.Hour, "office", 1000)
	if err != nil || arec.Kind != control.AllowManual || arec.Comment != "office" || arec.UID == nil || *arec.UID != 1000 || arec.Until.IsZero() {
		t.Errorf("allow = %+v, %v", arec, err)
	}
	var allows []control.AllowRecord
	if err := h.Allows(ctx, time.Now(), func(a control.AllowRecord) error { allows = append(allows, a); return nil }); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]control.AllowRecord{}
	for _, a := range allows {
		kinds[a.Kind] = a
	}
	if s, m := kinds[control.AllowStatic], kinds[control.AllowManual]; s.Prefix != netip.MustParsePrefix("198.51.100.0/24") || s.UID != nil ||
		m.Prefix != p || len(allows) != 2 {
		t.Errorf("allows = %+v", allows)
	}
	if err := h.Disallow(ctx, netip.MustParsePrefix("198.51.100.0/24"), 0); !errors.Is(err, control.ErrRefused) || !strings.Contains(err.Error(), "firewall.allow") {
		t.Errorf("disallow of a static allow: %v, want a refusal pointing at firewall.allow", err)
	}

	// The next start keeps the ban of an address allowed since out of the
	// kernel: an enforcing daemon lists it as held by the allow, not as a
	// would-ban.
	eng2, err := engine.New(o, engine.Deps{Firewall: dryrun.New(dryrun.Options{Mode: "enforce"}), Geo: foreignGeo{}, Store: st,
		Resolver: noDNS{}, HostAddrs: []netip.Addr{netip.MustParseAddr("203.0.113.200")}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, enforce := range []bool{true, false} {
		var got *control.BanRecord
		h2 := &controlHandler{eng: eng2, enforce: enforce}
		h2.Bans(ctx, time.Now(), func(b control.BanRecord) error {
			if b.Addr == held {
				got = &b
			}
			return nil
		})
		if got == nil || got.Allowed != enforce || got.Monitor == enforce {
			t.Errorf("enforce %v: the held ban after a restart: %+v; want allowed=%v monitor=%v", enforce, got, enforce, !enforce)
		}
	}

	if err := h.Disallow(ctx, p, 0); err != nil {
		t.Errorf("disallow: %v", err)
	}
	if err := h.Disallow(ctx, p, 0); !errors.Is(err, control.ErrNotAllowed) {
		t.Errorf("second disallow: %v, want control.ErrNotAllowed", err)
	}
}
