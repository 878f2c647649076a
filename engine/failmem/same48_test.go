package failmem

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/engine/failmem/internal/failmem48"
)

// The 40-byte record decides as the 48-byte one of 5b184bf
// (internal/failmem48, kept as this test's oracle): random histories of
// failures, challenges, logins, blind responses and ticks, over several
// settings, give the same verdicts (ban, reason, flag) event by event.
// Where the record is documented to differ the histories stay inside what
// is exact: three accounts (enum_accounts ≤ 4), known_for up to 4.5 h or,
// at 7 days, no check within 74 s past it.
func TestSameVerdictsAs48ByteRecord(t *testing.T) {
	settings := []struct {
		name    string
		mod     func(*Options)
		maxStep int // index into steps
	}{
		{"defaults, known_for 1h", func(o *Options) { o.KnownFor = time.Hour }, 9},
		{"defaults", nil, 9},
		{"max_failures 8", func(o *Options) { o.MaxFailures, o.KnownFor = 8, 2*time.Hour }, 9},
		{"slow 6 in 1h, enum 4", func(o *Options) {
			o.SlowMaxFailures, o.SlowFindTime, o.EnumAccounts, o.KnownFor = 6, time.Hour, 4, time.Hour
		}, 9},
		// 20 s buckets: their 16-bit index wraps in 7.6 days, after which
		// the 48-byte record counted an idle address's old failures again
		// (the 40-byte record counts from the exact newest failure): steps
		// of an hour at most keep every address busier than that.
		{"known_max_failures 0, find 1m", func(o *Options) { o.KnownMaxFailures, o.FindTime, o.KnownFor = 0, time.Minute, 3*time.Hour }, 7},
		{"known_max_failures 7", func(o *Options) { o.KnownMaxFailures, o.KnownFor = 7, 30*time.Minute }, 9},
		// Bursts (steps of 30 s at most) reach the find_time rules.
		{"max_failures 8, bursts", func(o *Options) { o.MaxFailures, o.EnumAccounts, o.KnownFor = 8, 0, time.Hour }, 4},
		{"defaults, bursts", func(o *Options) { o.EnumAccounts, o.KnownFor = 0, time.Hour }, 4},
	}
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.50"), netip.MustParseAddr("203.0.113.51"), netip.MustParseAddr("2001:db8::50")}
	accounts := []string{"", "1001", "1002", "1003"}
	steps := []time.Duration{0, time.Second, 2 * time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute, 11 * time.Minute, time.Hour, 5 * time.Hour, 26 * time.Hour}
	seen := map[string]int{} // verdicts compared, by what they said
	for _, s := range settings {
		for seed := range uint64(40) {
			t.Run(fmt.Sprintf("%s/%d", s.name, seed), func(t *testing.T) {
				o := DefaultOptions()
				if s.mod != nil {
					s.mod(&o)
				}
				m, err := New(o)
				if err != nil {
					t.Fatal(err)
				}
				o48 := failmem48.Options{
					MaxFailures: o.MaxFailures, FindTime: o.FindTime, SlowMaxFailures: o.SlowMaxFailures, SlowFindTime: o.SlowFindTime,
					EnumAccounts: o.EnumAccounts, ChallengeTimeout: o.ChallengeTimeout, KnownFor: o.KnownFor,
					KnownMaxFailures: o.KnownMaxFailures, MaxAddrs: o.MaxAddrs,
				}
				old, err := failmem48.New(o48)
				if err != nil {
					t.Fatal(err)
				}
				r := rand.New(rand.NewPCG(seed, 48))
				at := t0
				lastAuth := map[netip.Addr]time.Time{}
				for i := range 600 {
					at = at.Add(steps[r.IntN(s.maxStep+1)])
					if r.IntN(50) == 0 {
						at = at.Add(-time.Duration(r.IntN(20)) * time.Second) // a clock step back
					}
					a := addrs[r.IntN(len(addrs))]
					if r.IntN(10) == 0 {
						var got, want []string
						m.Tick(at, func(b netip.Addr, v Verdict) { got = append(got, fmt.Sprint(b, v.Ban, v.Reason, v.Flag)) })
						old.Tick(at, func(b netip.Addr, v failmem48.Verdict) { want = append(want, fmt.Sprint(b, v.Ban, v.Reason, v.Flag)) })
						if fmt.Sprint(got) != fmt.Sprint(want) {
							t.Fatalf("event %d, tick at +%v: %v, 48-byte record %v", i, at.Sub(t0), got, want)
						}
						continue
					}
					kind := Kind(1 + r.IntN(4))
					acc := accounts[r.IntN(len(accounts))]
					tr := []Transport{UDP, UDP, UDP, TCP}[r.IntN(4)]
					blind := kind == ChallengeFailed && r.IntN(3) == 0
					if la, ok := lastAuth[a]; ok && o.KnownFor > 4*time.Hour {
						// known_for 7 days is kept in 37 s units: skip the 74 s
						// past it where the records may differ.
						if d := at.Sub(la) - o.KnownFor; d > 0 && d <= 75*time.Second {
							continue
						}
					}
					if kind == AuthOK {
						lastAuth[a] = at
					}
					ob := Observation{Time: at, Kind: kind, Account: HashAccount(acc), Transport: tr, Blind: blind}
					v := m.Observe(a, ob)
					w := old.Observe(a, failmem48.Observation{Time: at, Kind: failmem48.Kind(kind), Account: failmem48.HashAccount(acc),
						Transport: failmem48.Transport(tr), Blind: blind})
					switch {
					case v.Ban:
						seen["ban: "+strings.TrimRight(strings.SplitN(v.Reason, ":", 2)[0], "0123456789 ")]++
					case v.Flag != "":
						seen["flag: "+v.Flag[:20]]++
					}
					if v.Ban != w.Ban || v.Reason != w.Reason || v.Flag != w.Flag {
						t.Fatalf("event %d (+%v %s %s %q %v blind %v): verdict %+v, 48-byte record %+v", i, at.Sub(t0), a, kindName(kind), acc, tr, blind, v, w)
					}
					if m.Known(a, at) != old.Known(a, at) {
						t.Fatalf("event %d (+%v %s): known %v, 48-byte record %v", i, at.Sub(t0), a, m.Known(a, at), old.Known(a, at))
					}
					if min(old.Blind(a), 7) != m.Blind(a) || min(old.Unanswered(a), 15) != m.Unanswered(a) {
						t.Fatalf("event %d: blind %d unanswered %d, 48-byte record %d %d", i, m.Blind(a), m.Unanswered(a), old.Blind(a), old.Unanswered(a))
					}
				}
			})
		}
	}
	// The histories must reach every kind of verdict, or they prove little.
	for _, k := range []string{"ban: 5 failures in 10m0s", "ban: 8 failures in 10m0s", "ban: 5 failures over TCP/TLS in 10m0s from a known address", "ban: slow scan", "ban: user enumeration", "flag: failures from a know", "flag: blind evidence: a ch", "flag: unanswered challenge"} {
		if seen[k] == 0 {
			t.Errorf("no %q verdict in the histories", k)
		}
	}
	t.Logf("verdicts compared: %v", seen)
}
