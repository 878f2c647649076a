package engine

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/state"
)

var bg = context.Background()

// storedBan reads addr's ban row straight from the DB file (a second
// connection, as a restarted daemon would).
func storedBan(t *testing.T, dbPath string, a string) (state.Ban, bool) {
	t.Helper()
	st, err := state.OpenReadOnly(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bans, err := st.Bans(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bans {
		if b.Addr == netip.MustParseAddr(a) {
			return b, true
		}
	}
	return state.Ban{}, false
}

// A manual ban obeys the never-ban rules: each refusal wraps ErrNeverBan,
// says why, and changes neither the kernel nor the DB.
func TestBanManualNeverBan(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(o *Options) {
		o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/28")}
		o.AMIPeers = append(o.AMIPeers, netip.MustParseAddr("198.51.100.250"))
	}})
	r.feed(loadEvents(t, "ami-s3-register-ok-push.raw", recordedMap)) // learns 203.0.113.31
	r.sync()
	if _, err := r.eng.AllowManual(bg, netip.MustParsePrefix("203.0.113.64/26"), 0, "office", 1000); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		"127.0.0.1":      "loopback",
		"::1":            "loopback",
		"198.51.100.1":   "host's own address",
		"198.51.100.250": "AMI peer",
		"203.0.113.5":    "static allow 203.0.113.0/28",
		"203.0.113.31":   "learned push server",
		"203.0.113.70":   "manual allow 203.0.113.64/26",
	}
	for a, why := range cases {
		_, err := r.eng.BanManual(bg, netip.MustParseAddr(a), time.Hour, "test", 0)
		if !errors.Is(err, ErrNeverBan) || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), a) {
			t.Errorf("BanManual(%s) = %v, want ErrNeverBan naming %q", a, err, why)
		}
		if r.banned(a) {
			t.Errorf("%s in the kernel ban set", a)
		}
		if _, ok := storedBan(t, r.dbPath, a); ok {
			t.Errorf("%s: refused ban written to the DB", a)
		}
	}
	if len(r.eng.Bans(r.clock.Now())) != 0 {
		t.Errorf("Bans = %+v", r.eng.Bans(r.clock.Now()))
	}
}

// A manual ban is in the kernel, in memory (Bans) and in the DB with its
// origin and uid when BanManual returns, and a restart restores it; an
// unban removes it everywhere and a second unban says ErrNotBanned.
func TestBanManualSurvivesRestartUnbanStays(t *testing.T) {
	clock := newClock()
	dbPath := filepath.Join(t.TempDir(), state.FileName)
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	rec, err := r1.eng.BanManual(bg, netip.MustParseAddr("203.0.113.40"), 2*time.Hour, "seen in the SBC log", 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := BanRecord{Addr: netip.MustParseAddr("203.0.113.40"), Reason: "manual: seen in the SBC log", Origin: OriginManual, UID: 1000,
		Offence: 1, Since: clock.Now().Truncate(time.Second), Until: clock.Now().Add(2 * time.Hour), Enforced: true}
	if rec != want {
		t.Errorf("record %+v\nwant   %+v", rec, want)
	}
	if e, ok := r1.banEntry("203.0.113.40"); !ok || e.Timeout != 2*time.Hour {
		t.Errorf("kernel entry %+v %v", e, ok)
	}
	// In the DB already (no flush tick, no Sync): what a kill -9 leaves.
	if b, ok := storedBan(t, dbPath, "203.0.113.40"); !ok || b.Origin != state.OriginManual || b.UID != 1000 || !b.Until.Equal(want.Until) {
		t.Errorf("stored %+v %v", b, ok)
	}
	// An engine ban too, to unban it later.
	for i := range 5 {
		r1.eng.Handle(bg, ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.41", string(rune('a'+i))))
	}
	if got := r1.eng.Bans(clock.Now()); len(got) != 2 || got[0] != want || got[1].Origin != OriginEngine || got[1].UID != -1 {
		t.Errorf("Bans = %+v", got)
	}
	r1.stop()

	clock.Advance(time.Minute)
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	if e, ok := r2.banEntry("203.0.113.40"); !ok || e.Timeout != 2*time.Hour-time.Minute {
		t.Errorf("manual ban not restored with its remaining time: %+v %v", e, ok)
	}
	if got := r2.eng.Bans(clock.Now()); len(got) != 2 || got[0] != want {
		t.Errorf("Bans after restart = %+v", got)
	}
	for _, a := range []string{"203.0.113.40", "203.0.113.41"} {
		if err := r2.eng.Unban(bg, netip.MustParseAddr(a), 0); err != nil {
			t.Fatalf("Unban %s: %v", a, err)
		}
		if r2.banned(a) {
			t.Errorf("%s still in the kernel", a)
		}
		if err := r2.eng.Unban(bg, netip.MustParseAddr(a), 0); !errors.Is(err, ErrNotBanned) {
			t.Errorf("second Unban %s = %v, want ErrNotBanned", a, err)
		}
	}
	if err := r2.eng.Unban(bg, netip.MustParseAddr("203.0.113.99"), 0); !errors.Is(err, ErrNotBanned) || !strings.Contains(err.Error(), "203.0.113.99") {
		t.Errorf("Unban of a never-banned address = %v", err)
	}
	r2.stop()

	r3 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	if r3.banned("203.0.113.40") || r3.banned("203.0.113.41") || len(r3.eng.Bans(clock.Now())) != 0 {
		t.Error("an unbanned address is back after a restart")
	}
	// The offence history stays: the next ban of the engine's source escalates.
	if b, ok := storedBan(t, dbPath, "203.0.113.41"); !ok || b.Offences != 1 {
		t.Errorf("offence history %+v %v", b, ok)
	}
}

// firewall.mode monitor: a manual ban is a would-ban, recorded, not in the
// kernel, and says so.
func TestBanManualMonitor(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(o *Options) { o.Enforce = false }})
	rec, err := r.eng.BanManual(bg, netip.MustParseAddr("203.0.113.42"), 0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Enforced || rec.Origin != OriginManual || rec.Until != r.clock.Now().Add(time.Hour) || rec.Reason != "manual" {
		t.Errorf("record %+v", rec)
	}
	if r.banned("203.0.113.42") {
		t.Error("monitor mode put a manual ban in the kernel")
	}
	if b, ok := storedBan(t, r.dbPath, "203.0.113.42"); !ok || !b.Monitor || b.Origin != state.OriginManual {
		t.Errorf("stored %+v %v", b, ok)
	}
	if err := r.eng.Unban(bg, netip.MustParseAddr("203.0.113.42"), 0); err != nil {
		t.Errorf("Unban of a would-ban: %v", err)
	}
}

// Without a daemon: OpenOffline on the DB and the backend, one operation,
// Close; the next Start agrees. No loop runs (Bans, BanManual, Unban work
// without Run).
func TestOfflineEngine(t *testing.T) {
	clock := newClock()
	dbPath := filepath.Join(t.TempDir(), state.FileName)
	fw := dryrun.New(dryrun.Options{Mode: "enforce", Now: clock.Now})
	shared := func(d *Deps) { d.Firewall = fw }
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, deps: shared})
	for i := range 5 {
		r1.eng.Handle(bg, ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.43", string(rune('a'+i))))
	}
	r1.stop() // the daemon stops; its firewall stays up

	offline := func(do func(e *Engine)) {
		t.Helper()
		st, err := state.Open(dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		o := testConfig()
		e, err := OpenOffline(bg, o, Deps{Firewall: fw, Store: st, Now: clock.Now, HostAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")},
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		do(e)
		if err := e.Close(bg); err != nil {
			t.Fatal(err)
		}
		if e.running.Load() {
			t.Error("OpenOffline started Run")
		}
	}
	offline(func(e *Engine) {
		if got := e.Bans(clock.Now()); len(got) != 1 || got[0].Addr != netip.MustParseAddr("203.0.113.43") {
			t.Errorf("offline Bans = %+v", got)
		}
		if _, err := e.BanManual(bg, netip.MustParseAddr("127.0.0.1"), 0, "", 0); !errors.Is(err, ErrNeverBan) {
			t.Errorf("offline ban of loopback: %v", err)
		}
		if _, err := e.BanManual(bg, netip.MustParseAddr("198.51.100.1"), 0, "", 0); !errors.Is(err, ErrNeverBan) {
			t.Errorf("offline ban of the host's address: %v", err)
		}
		if _, err := e.BanManual(bg, netip.MustParseAddr("203.0.113.44"), time.Hour, "offline", 0); err != nil {
			t.Fatal(err)
		}
		if err := e.Unban(bg, netip.MustParseAddr("203.0.113.43"), 0); err != nil {
			t.Fatal(err)
		}
	})
	if ok, _ := fw.Contains(bg, firewall.SetBan, netip.MustParseAddr("203.0.113.44")); !ok {
		t.Error("offline ban not in the kernel")
	}
	if ok, _ := fw.Contains(bg, firewall.SetBan, netip.MustParseAddr("203.0.113.43")); ok {
		t.Error("offline unban left the kernel entry")
	}
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, deps: shared})
	got := r2.eng.Bans(clock.Now())
	if len(got) != 1 || got[0].Addr != netip.MustParseAddr("203.0.113.44") || got[0].Origin != OriginManual {
		t.Errorf("daemon after offline commands: Bans = %+v", got)
	}
	if r2.banned("203.0.113.43") {
		t.Error("offline unban undone by the next start")
	}
}

// AllowManual / Disallow: kernel, memory, DB; static allows are refused
// with the file to edit; a restart restores the manual allow.
func TestAllowManualDisallow(t *testing.T) {
	clock := newClock()
	dbPath := filepath.Join(t.TempDir(), state.FileName)
	static := func(o *Options) {
		o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}
		o.ConfigFile = "/etc/sipsentry/sipsentry.toml"
	}
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, cfg: static})
	rec, err := r1.eng.AllowManual(bg, netip.MustParsePrefix("203.0.113.77/30"), 0, "partner \"SBC\"", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Prefix != netip.MustParsePrefix("203.0.113.76/30") || rec.Kind != AllowManual || rec.UID != 1000 || !rec.Until.IsZero() || rec.Comment != "partner ?SBC?" {
		t.Errorf("record %+v", rec)
	}
	if !r1.allowed("203.0.113.77") {
		t.Error("manual allow not in the kernel")
	}
	if _, err := r1.eng.AllowManual(bg, netip.MustParsePrefix("0.0.0.0/0"), 0, "", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("allow of everything: %v", err)
	}
	err = r1.eng.Disallow(bg, netip.MustParsePrefix("198.51.100.0/25"), 0)
	if !errors.Is(err, ErrStaticAllow) || !strings.Contains(err.Error(), "remove it from firewall.allow in /etc/sipsentry/sipsentry.toml") {
		t.Errorf("Disallow of a static allow = %v", err)
	}
	if err := r1.eng.Disallow(bg, netip.MustParsePrefix("203.0.113.200/32"), 0); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Disallow of nothing = %v", err)
	}
	kinds := map[string]string{}
	for _, a := range r1.eng.Allows(clock.Now()) {
		kinds[a.Prefix.String()] = a.Kind
	}
	if kinds["198.51.100.0/25"] != AllowStatic || kinds["203.0.113.76/30"] != AllowManual || len(kinds) != 2 {
		t.Errorf("Allows kinds %v", kinds)
	}
	r1.stop()

	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, cfg: static})
	if !r2.allowed("203.0.113.77") {
		t.Fatal("manual allow not restored")
	}
	if err := r2.eng.Disallow(bg, netip.MustParsePrefix("203.0.113.76/30"), 1000); err != nil {
		t.Fatal(err)
	}
	if r2.allowed("203.0.113.77") {
		t.Error("disallowed prefix still in the kernel")
	}
	if err := r2.eng.Disallow(bg, netip.MustParsePrefix("203.0.113.76/30"), 1000); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("second Disallow = %v", err)
	}
	r2.stop()
	r3 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, cfg: static})
	if r3.allowed("203.0.113.77") {
		t.Error("disallowed prefix back after a restart")
	}
}

// A stored ban of an address allowed since: the next engine keeps it as
// the DB has it (listed, not enforced: the allow wins) and Unban lifts it,
// so the DB and the engine agree; it is not back after a restart.
func TestStoredBanOfAllowedAddress(t *testing.T) {
	clock := newClock()
	dbPath := filepath.Join(t.TempDir(), state.FileName)
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	if _, err := r1.eng.BanManual(bg, netip.MustParseAddr("203.0.113.5"), 2*time.Hour, "scanner", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.eng.AllowManual(bg, netip.MustParsePrefix("203.0.113.0/24"), 0, "partner", 0); err != nil {
		t.Fatal(err)
	}
	r1.stop()
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	got := r2.eng.Bans(clock.Now())
	if len(got) != 1 || got[0].Addr != netip.MustParseAddr("203.0.113.5") || got[0].Enforced {
		t.Errorf("Bans = %+v: want the stored ban, not enforced", got)
	}
	if r2.banned("203.0.113.5") {
		t.Error("a ban of an allowed address put in the kernel")
	}
	if err := r2.eng.Unban(bg, netip.MustParseAddr("203.0.113.5"), 0); err != nil {
		t.Fatalf("Unban: %v", err)
	}
	r2.stop()
	r3 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	if len(r3.eng.Bans(clock.Now())) != 0 {
		t.Error("unbanned ban back after a restart")
	}
	if b, ok := storedBan(t, dbPath, "203.0.113.5"); !ok || b.Until.After(clock.Now()) {
		t.Errorf("DB row %+v %v: want lifted", b, ok)
	}
}
