package failmem

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// An address is known for at least known_for after its login and at most
// two units (known_for/16384) longer; to the second up to 4.5 h.
func TestKnownForBoundaries(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.40")
	for _, kf := range []time.Duration{time.Minute, time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour, 400 * 24 * time.Hour} {
		m := mustNew(t, func(o *Options) { o.KnownFor = kf })
		unit := time.Duration(m.authUnit) * time.Second
		m.Observe(a, Observation{Time: t0, Kind: AuthOK, Transport: UDP})
		late := kf + 2*unit
		if kf <= 4*time.Hour {
			late = kf + time.Second // exact
		}
		for _, c := range []struct {
			after time.Duration
			known bool
		}{
			{0, true}, {-5 * time.Second, true}, {kf / 2, true}, {kf, true}, {late, false}, {2 * kf, false},
		} {
			if got := m.Known(a, t0.Add(c.after)); got != c.known {
				t.Errorf("known_for %v (unit %v): known %v after the login = %v, want %v", kf, unit, c.after, got, c.known)
			}
		}
	}
}

// The 16-bit login time wraps after 65535 units; the sweep forgets a login
// before that, so an address that logged in once is never "known" again
// months later: 5 UDP failures then ban it. With an observation every hour
// (the sweep's clock moving on) and, with none, one jump of exactly one
// wrap.
func TestKnownDoesNotWrap(t *testing.T) {
	for _, kf := range []time.Duration{time.Hour, 7 * 24 * time.Hour} {
		for _, ticked := range []bool{true, false} {
			m := mustNew(t, func(o *Options) { o.KnownFor = kf })
			wrap := time.Duration(authMod*m.authUnit) * time.Second
			// Enough logins that the table has more slots than one tick visits.
			var addrs []netip.Addr
			for i := range 3000 {
				a := netip.AddrFrom4([4]byte{198, 51, byte(100 + i>>8), byte(i)})
				addrs = append(addrs, a)
				m.Observe(a, Observation{Time: t0, Kind: AuthOK, Transport: UDP})
			}
			end := t0.Add(wrap)
			if ticked {
				// A phone logs in every hour: the clock moves on, the sweep
				// visits a share of the table each time.
				phone := netip.MustParseAddr("2001:db8::99")
				end = t0.Add(3 * wrap)
				for at := t0.Add(time.Hour); at.Before(end); at = at.Add(time.Hour) {
					m.Observe(phone, Observation{Time: at, Kind: AuthOK, Transport: UDP})
					m.Tick(at, func(netip.Addr, Verdict) {})
					if at.Sub(t0) > kf+time.Duration(2*m.authUnit)*time.Second {
						for _, a := range addrs[:10] {
							if m.Known(a, at) {
								t.Fatalf("known_for %v: %s known %v after its only login", kf, a, at.Sub(t0))
							}
						}
					}
				}
			}
			var v Verdict
			for i := range 5 {
				v = m.Observe(addrs[0], Observation{Time: end.Add(time.Duration(i) * time.Second), Kind: Failure, Transport: UDP})
			}
			if !v.Ban || !strings.Contains(v.Reason, "5 failures in") {
				t.Errorf("known_for %v, ticked %v: 5 failures %v after the only login: %+v, want a ban", kf, ticked, end.Sub(t0), v)
			}
			for _, a := range addrs {
				if m.Known(a, end) {
					t.Fatalf("known_for %v, ticked %v: %s known %v after its only login", kf, ticked, a, end.Sub(t0))
				}
			}
		}
	}
}

// A reload that changes known_for re-encodes the logins: lengthening it
// keeps the login known longer, shortening it ends it sooner.
func TestReloadKnownFor(t *testing.T) {
	a := netip.MustParseAddr("2001:db8::40")
	m := mustNew(t, nil)
	m.Observe(a, Observation{Time: t0, Kind: AuthOK, Transport: TLS})
	o := DefaultOptions()
	o.KnownFor = 30 * 24 * time.Hour
	if err := m.SetOptions(o); err != nil {
		t.Fatal(err)
	}
	if !m.Known(a, t0.Add(20*24*time.Hour)) {
		t.Error("known_for 7d → 30d: not known 20 days after the login")
	}
	o.KnownFor = 7 * 24 * time.Hour
	if err := m.SetOptions(o); err != nil {
		t.Fatal(err)
	}
	if m.Known(a, t0.Add(20*24*time.Hour)) || !m.Known(a, t0.Add(6*24*time.Hour)) {
		t.Error("known_for back to 7d: want known at 6 days, not at 20")
	}
	o.KnownFor = 0
	if err := m.SetOptions(o); err != nil {
		t.Fatal(err)
	}
	if m.Known(a, t0.Add(time.Hour)) {
		t.Error("known_for 0: known")
	}
}

// The fast buckets' base comes from the exact newest failure: failures
// 65536 buckets apart (a 16-bit index's wrap) are not counted together.
func TestFastBucketsDoNotAlias(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.41")
	m := mustNew(t, func(o *Options) { o.MaxFailures, o.SlowMaxFailures, o.EnumAccounts = 8, 0, 0 })
	for i := range 7 {
		if v := m.Observe(a, Observation{Time: t0.Add(time.Duration(i) * time.Second), Kind: Failure, Transport: UDP}); v.Ban {
			t.Fatalf("failure %d banned", i+1)
		}
	}
	later := t0.Add(time.Duration(65536*m.fastW) * time.Second)
	if v := m.Observe(a, Observation{Time: later, Kind: Failure, Transport: UDP}); v.Ban {
		t.Fatalf("the 8th failure %v after 7 banned: %+v", later.Sub(t0), v)
	}
	for i := 1; i < 8; i++ {
		v := m.Observe(a, Observation{Time: later.Add(time.Duration(i) * time.Second), Kind: Failure, Transport: UDP})
		if (i == 7) != v.Ban {
			t.Fatalf("failure %d of the new spell: %+v", i+1, v)
		}
	}
}

// A reload that changes find_time keeps the failures counted, by the ring
// (max_failures 5) and by the buckets (max_failures 8).
func TestReloadFindTimeKeepsCounts(t *testing.T) {
	for _, maxF := range []int{5, 8} {
		a := netip.MustParseAddr("198.51.100.41")
		m := mustNew(t, func(o *Options) { o.MaxFailures = maxF })
		for i := range maxF - 1 {
			m.Observe(a, Observation{Time: t0.Add(time.Duration(i) * time.Second), Kind: Failure, Transport: UDP})
		}
		for _, ft := range []time.Duration{30 * time.Minute, 3 * time.Minute} {
			o := m.o
			o.FindTime = ft
			if err := m.SetOptions(o); err != nil {
				t.Fatal(err)
			}
		}
		v := m.Observe(a, Observation{Time: t0.Add(time.Minute), Kind: Failure, Transport: UDP})
		if !v.Ban || !strings.Contains(v.Reason, "failures in 3m0s") {
			t.Errorf("max_failures %d: after two reloads, failure %d: %+v, want a ban", maxF, maxF, v)
		}
	}
}

// Enumeration is exact up to enum_accounts 4: three accounts tried over and
// over are three, and a fourth bans.
func TestEnumerationExactUpToFour(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.42")
	m := mustNew(t, func(o *Options) { o.EnumAccounts, o.MaxFailures, o.SlowMaxFailures = 4, 1000, 0 })
	at := t0
	for round := range 20 {
		for _, acc := range []string{"1001", "1002", "1003"} {
			at = at.Add(time.Second)
			if v := m.Observe(a, Observation{Time: at, Kind: Failure, Account: HashAccount(acc), Transport: UDP}); v.Ban {
				t.Fatalf("round %d, %s: banned (%s) with three accounts", round, acc, v.Reason)
			}
		}
	}
	v := m.Observe(a, Observation{Time: at.Add(time.Second), Kind: Failure, Account: HashAccount("1004"), Transport: UDP})
	if !v.Ban || v.Reason != "user enumeration: 4 accounts tried" {
		t.Fatalf("the 4th account: %+v, want an enumeration ban", v)
	}
}

// The shown counts share 16 bits with the flags: blind saturates at 7 and
// unanswered at 15, and neither spills into the other or the flags.
func TestPackedCountsSaturate(t *testing.T) {
	a := netip.MustParseAddr("203.0.113.43")
	m := mustNew(t, func(o *Options) { o.MaxFailures, o.SlowMaxFailures, o.EnumAccounts, o.KnownMaxFailures = 1000, 0, 0, 0 })
	flags := 0
	for i := range 20 {
		if v := m.Observe(a, Observation{Time: t0.Add(time.Duration(i) * time.Second), Kind: ChallengeFailed, Transport: UDP, Blind: true}); v.Flag == FlagBlind {
			flags++
		}
	}
	if n := m.Blind(a); n != 7 || flags != 1 {
		t.Fatalf("blind = %d (flagged %d times), want 7 (once)", n, flags)
	}
	b := netip.MustParseAddr("203.0.113.44")
	for i := range 40 {
		m.Observe(b, Observation{Time: t0.Add(time.Duration(i) * 10 * time.Second), Kind: ChallengeSent, Transport: UDP})
	}
	m.Tick(t0.Add(time.Hour), func(netip.Addr, Verdict) {})
	if n, bl := m.Unanswered(b), m.Blind(b); n != 15 || bl != 0 {
		t.Fatalf("unanswered = %d, blind = %d: want 15, 0", n, bl)
	}
	m.mu.Lock()
	r := m.recRef(b, false)
	f, p := r.flags(), r.proven()
	m.mu.Unlock()
	if f&^(flagUnansweredShown|flagKnownShown) != 0 || p != 0 {
		t.Fatalf("flags %04b, proven %05b after 40 unanswered challenges", f, p)
	}
}
