package failmem

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A window's first count sets its base. The 48-byte record left it at 0, so
// for a first failure at a time whose 16-bit bucket index was past 2^15
// the base never moved and the window counted that failure forever (a
// phone's failures days apart added up to max_failures or the slow limit).
func TestFirstCountSetsWindowBase(t *testing.T) {
	// at returns a time after t0 whose bucket index (width w) is 33768 mod 2^16.
	at := func(w int64) time.Time {
		tm := time.Unix((32768+1000)*w, 0)
		for tm.Before(t0) {
			tm = tm.Add(time.Duration(65536*w) * time.Second)
		}
		return tm
	}
	for _, c := range []struct {
		name  string
		mod   func(*Options)
		start time.Time
		n     int // failures at start; one more an hour later must not ban
		ban   string
	}{
		{"fast: 8 in 1m", func(o *Options) { o.FindTime, o.MaxFailures, o.EnumAccounts = time.Minute, 8, 0 }, at(20), 7, "8 failures in 1m0s"},
		{"slow: 12 in 7m", func(o *Options) {
			o.MaxFailures, o.EnumAccounts, o.KnownMaxFailures = 1000, 0, 0
			o.SlowFindTime, o.SlowMaxFailures = 7*time.Minute, 12
		}, at(60), 11, "slow scan: 12 failures in 7m0s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := netip.MustParseAddr("203.0.113.60")
			m := mustNew(t, c.mod)
			for i := range c.n {
				m.Observe(a, Observation{Time: c.start.Add(time.Duration(i) * time.Second), Kind: Failure, Transport: UDP})
			}
			later := c.start.Add(time.Hour)
			if v := m.Observe(a, Observation{Time: later, Kind: Failure, Transport: UDP}); v.Ban {
				t.Fatalf("a failure an hour after %d: %+v, want no ban", c.n, v)
			}
			// The window still counts: the limit within it bans.
			var v Verdict
			for i := 1; i < c.n+1; i++ {
				v = m.Observe(a, Observation{Time: later.Add(time.Duration(i) * time.Second), Kind: Failure, Transport: UDP})
			}
			if !v.Ban || !strings.Contains(v.Reason, c.ban) {
				t.Fatalf("%d failures within the window: %+v, want a ban for %q", c.n+1, v, c.ban)
			}
		})
	}
}
