package engine

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/state"
)

// A remote (CrowdSec) decision is a ban with its origin in memory, the
// kernel and the DB, restored with that origin; UnbanRemote lifts only
// remote bans; the never-ban rules refuse remote decisions too.
func TestBanRemoteOriginAndUnbanRemote(t *testing.T) {
	clock := newClock()
	dbPath := filepath.Join(t.TempDir(), state.FileName)
	r := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	a := netip.MustParseAddr("203.0.113.90")
	rec, err := r.eng.BanRemote(bg, a, 30*time.Minute, "sipsentry/brute-force", "crowdsec:sipsentry")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Origin != "crowdsec:sipsentry" || rec.UID != state.NoUID || !rec.Enforced || !rec.Until.Equal(clock.Now().Add(30*time.Minute)) {
		t.Errorf("record %+v", rec)
	}
	if e, ok := r.banEntry("203.0.113.90"); !ok || e.Timeout != 30*time.Minute {
		t.Errorf("kernel entry %+v %v", e, ok)
	}
	r.sync() // remote bans ride the writer's batches (a startup stream brings thousands)
	if b, ok := storedBan(t, dbPath, "203.0.113.90"); !ok || b.Origin != "crowdsec:sipsentry" {
		t.Errorf("stored %+v %v", b, ok)
	}
	if _, err := r.eng.BanRemote(bg, netip.MustParseAddr("127.0.0.1"), time.Hour, "x", "crowdsec:cscli"); !errors.Is(err, ErrNeverBan) {
		t.Errorf("remote ban of loopback = %v, want ErrNeverBan", err)
	}
	if _, err := r.eng.BanRemote(bg, a, time.Hour, "x", "manual"); !errors.Is(err, ErrInvalid) {
		t.Errorf("remote ban without a crowdsec origin = %v, want ErrInvalid", err)
	}
	// An engine ban is not lifted by a remote deletion.
	for i := range 5 {
		r.eng.Handle(bg, ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.91", string(rune('a'+i))))
	}
	if lifted, err := r.eng.UnbanRemote(bg, netip.MustParseAddr("203.0.113.91")); lifted || err != nil {
		t.Errorf("UnbanRemote of an engine ban = %v, %v", lifted, err)
	}
	if !r.banned("203.0.113.91") {
		t.Error("engine ban lifted by a remote deletion")
	}
	// A remote decision for an address the engine banned itself does not
	// take the ban over, so its deletion cannot lift it either.
	if rec, err := r.eng.BanRemote(bg, netip.MustParseAddr("203.0.113.91"), time.Minute, "x", "crowdsec:cscli"); err != nil || rec.Origin != OriginEngine {
		t.Errorf("remote decision over an engine ban: %+v, %v", rec, err)
	}
	if lifted, _ := r.eng.UnbanRemote(bg, netip.MustParseAddr("203.0.113.91")); lifted || !r.banned("203.0.113.91") {
		t.Error("engine ban lifted after a remote decision for it was deleted")
	}
	r.stop()

	clock.Advance(time.Minute)
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	got := r2.eng.Bans(clock.Now())
	found := false
	for _, b := range got {
		if b.Addr == a {
			found = b.Origin == "crowdsec:sipsentry"
		}
	}
	if !found {
		t.Fatalf("remote ban not restored with its origin: %+v", got)
	}
	if lifted, err := r2.eng.UnbanRemote(bg, a); !lifted || err != nil {
		t.Fatalf("UnbanRemote = %v, %v", lifted, err)
	}
	if r2.banned("203.0.113.90") {
		t.Error("remote ban still in the kernel")
	}
}

// An operator's unban gives the address a fresh start: its next single
// failure does not re-ban it (the failure memory forgot the windows).
func TestUnbanForgetsFailures(t *testing.T) {
	r := newRig(t, rigOpt{})
	a := "203.0.113.93"
	for i := range 5 {
		r.eng.Handle(bg, ev(ami.EventChallengeResponseFailed, "1001", a, string(rune('a'+i))))
	}
	if !r.banned(a) {
		t.Fatal("5 failures did not ban")
	}
	if err := r.eng.Unban(bg, netip.MustParseAddr(a), 0); err != nil {
		t.Fatal(err)
	}
	r.eng.Handle(bg, ev(ami.EventChallengeResponseFailed, "1001", a, "f"))
	if r.banned(a) {
		t.Error("one failure after an unban banned the address again")
	}
	for i := range 4 {
		r.eng.Handle(bg, ev(ami.EventChallengeResponseFailed, "1001", a, string(rune('g'+i))))
	}
	if !r.banned(a) {
		t.Error("5 fresh failures after the unban did not ban")
	}
}
