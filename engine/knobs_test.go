package engine

import (
	"context"
	"fmt"
	"testing"

	"github.com/sipsentry/sipsentry/ami"
)

// TestKnobMatrix: firewall.mode (Options.Enforce) alone decides whether a
// ban reaches the kernel; engine.geo_mode only adds the country policy.
// With Enforce, a brute-forcer is banned under every geo mode.
func TestKnobMatrix(t *testing.T) {
	const (
		brute   = "203.0.113.90"  // foreign, 5 failures in a minute
		foreign = "203.0.113.91"  // foreign, one failure
		home    = "198.51.100.91" // home country, one failure
	)
	for _, enforce := range []bool{false, true} {
		for _, mode := range []GeoMode{GeoOff, GeoStrict, GeoDrop} {
			t.Run(fmt.Sprintf("enforce=%v/geo=%s", enforce, mode), func(t *testing.T) {
				r := newRig(t, rigOpt{cfg: func(o *Options) { o.Enforce, o.GeoMode = enforce, mode }})
				for i := range 5 {
					r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", brute, fmt.Sprint("b", i)))
				}
				r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", foreign, "f"))
				r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", home, "h"))
				r.sync()

				wantBrute := true
				wantForeign := mode == GeoStrict
				for _, c := range []struct {
					addr    string
					decided bool
				}{{brute, wantBrute}, {foreign, wantForeign}, {home, false}} {
					if got, want := r.banned(c.addr), c.decided && enforce; got != want {
						t.Errorf("%s in the kernel ban set: %v, want %v", c.addr, got, want)
					}
				}
				st := r.eng.Snapshot()
				n := 1
				if wantForeign {
					n = 2
				}
				if enforce {
					if st.Decisions[DecisionBan] != uint64(n) || st.Decisions[DecisionWouldBan] != 0 || st.ActiveBans != n {
						t.Errorf("decisions %v, active %d: want %d bans", st.Decisions, st.ActiveBans, n)
					}
				} else {
					if st.Decisions[DecisionWouldBan] != uint64(n) || st.Decisions[DecisionBan] != 0 || st.WouldBans != n || st.ActiveBans != 0 {
						t.Errorf("decisions %v, would-bans %d: want %d would-bans", st.Decisions, st.WouldBans, n)
					}
					if !r.logged("would ban") {
						t.Error("a would-ban is not logged")
					}
				}
				if st.Enforce != enforce || st.GeoMode != string(mode) {
					t.Errorf("snapshot says enforce=%v geo=%s", st.Enforce, st.GeoMode)
				}
			})
		}
	}
}
