package engine

import (
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/state"
)

func entryMap(t *testing.T, es []firewall.Entry) map[netip.Prefix]firewall.Entry {
	t.Helper()
	m := map[netip.Prefix]firewall.Entry{}
	for _, e := range es {
		if _, dup := m[e.Prefix]; dup {
			t.Errorf("%s twice", e.Prefix)
		}
		m[e.Prefix] = e
	}
	return m
}

// Entries is exactly what the engine put in the kernel: the enforced bans
// with their remaining time (not would-bans, not lifted bans), and the
// static, learned and manual allows.
func TestEntriesMatchKernel(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(o *Options) {
		o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}
	}})
	r.feed(loadEvents(t, "ami-security-session.raw", recordedMap))
	r.feed(loadEvents(t, "ami-s3-register-ok-push.raw", recordedMap))
	r.sync()
	if _, err := r.eng.BanManual(bg, netip.MustParseAddr("203.0.113.50"), 3*time.Hour, "x", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.AllowManual(bg, netip.MustParsePrefix("203.0.113.96/27"), time.Hour, "temp", 0); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		r.eng.Handle(bg, ev(ami.EventChallengeResponseFailed, "1001", "203.0.113.51", string(rune('a'+i))))
	}
	if err := r.eng.Unban(bg, netip.MustParseAddr("203.0.113.51"), 0); err != nil {
		t.Fatal(err)
	}
	r.clock.Advance(10 * time.Minute)

	for _, set := range []firewall.Set{firewall.SetBan, firewall.SetAllow} {
		kernel, err := r.fw.List(bg, set)
		if err != nil {
			t.Fatal(err)
		}
		want := entryMap(t, kernel)
		got := entryMap(t, slices.Collect(r.eng.Entries(set)))
		if !maps.EqualFunc(got, want, func(a, b firewall.Entry) bool { return a.Timeout == b.Timeout && a.Comment == b.Comment }) {
			t.Errorf("%s: Entries\n%v\nkernel\n%v", set, got, want)
		}
		if len(got) < 2 {
			t.Errorf("%s: only %d entries", set, len(got))
		}
	}
	if e, ok := entryMap(t, slices.Collect(r.eng.Entries(firewall.SetBan)))[netip.MustParsePrefix("203.0.113.50/32")]; !ok || e.Timeout != 3*time.Hour-10*time.Minute {
		t.Errorf("manual ban entry %+v %v", e, ok)
	}
	n := 0
	for range r.eng.Entries(firewall.SetAllowCountry) {
		n++
	}
	if n != 0 {
		t.Errorf("allow-cc: %d entries from the engine", n)
	}
	// A consumer that stops early is obeyed.
	n = 0
	for range r.eng.Entries(firewall.SetBan) {
		n++
		break
	}
	if n != 1 {
		t.Error("early stop")
	}
}

// A static allow removed from the config while the daemon was stopped is
// gone from the kernel after the next start, whatever its comment; so is
// any allow entry the engine does not want.
func TestStaticAllowRemovedWhileStopped(t *testing.T) {
	clock := newClock()
	dbPath := filepath.Join(t.TempDir(), state.FileName)
	fw := dryrun.New(dryrun.Options{Mode: "enforce", Now: clock.Now})
	shared := func(d *Deps) { d.Firewall = fw }
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, deps: shared, cfg: func(o *Options) {
		o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25"), netip.MustParsePrefix("198.51.100.0/25")}
	}})
	r1.feed(loadEvents(t, "ami-s3-register-ok-push.raw", recordedMap))
	r1.sync()
	r1.stop()
	// Entries under other comments, as an older backend wrote static allows.
	if err := fw.Add(bg, firewall.SetAllow,
		firewall.Entry{Prefix: netip.MustParsePrefix("203.0.113.128/25"), Comment: "sipsentry static"},
		firewall.Entry{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Comment: "admin"}); err != nil {
		t.Fatal(err)
	}

	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, deps: shared, cfg: func(o *Options) {
		o.StaticAllows = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/25")}
	}})
	got := entryMap(t, mustList(t, fw, firewall.SetAllow))
	want := []string{"198.51.100.0/25", "203.0.113.31/32"} // the kept static allow, the learned push server
	if len(got) != len(want) {
		t.Errorf("allow set %v, want %v", got, want)
	}
	for _, p := range want {
		if _, ok := got[netip.MustParsePrefix(p)]; !ok {
			t.Errorf("%s missing from the allow set", p)
		}
	}
	if r2.allowed("203.0.113.200") {
		t.Error("removed static allow still in the kernel")
	}
	// And on Reload.
	if err := r2.eng.Reload(bg, testConfig()); err != nil {
		t.Fatal(err)
	}
	if r2.allowed("198.51.100.5") || !r2.allowed("203.0.113.31") {
		t.Errorf("reload: static allow not removed, or learned allow lost: %v", mustList(t, fw, firewall.SetAllow))
	}
}

func mustList(t *testing.T, fw firewall.Backend, set firewall.Set) []firewall.Entry {
	t.Helper()
	es, err := fw.List(bg, set)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// The ban set's entries are read under the ban book's lock: bans made
// while a verifier iterates neither race with it nor corrupt what it sees
// (run with -race).
func TestBanEntriesWhileBanning(t *testing.T) {
	r := newRig(t, rigOpt{})
	done := make(chan struct{})
	made := 0
	go func() {
		defer close(done)
		a := netip.MustParseAddr("203.0.113.1")
		for range 200 {
			if _, err := r.eng.banWith(bg, banRequest{addr: a, reason: "test", now: r.clock.Now(), start: time.Now()}); err == nil {
				made++
			}
			a = a.Next()
		}
	}()
	for {
		select {
		case <-done:
			n := 0
			for e := range r.eng.Entries(firewall.SetBan) {
				if !e.Prefix.IsValid() || e.Timeout <= 0 {
					t.Fatalf("bad entry %+v", e)
				}
				n++
			}
			if n != made || made < 190 {
				t.Fatalf("%d ban entries after %d bans made of 200", n, made)
			}
			return
		default:
		}
		for e := range r.eng.Entries(firewall.SetBan) {
			if !e.Prefix.IsValid() || e.Timeout <= 0 {
				t.Fatalf("bad entry %+v", e)
			}
		}
	}
}
