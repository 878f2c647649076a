package engine

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/engine/failmem"
)

// forgedCase is one case of ../shared/testdata/asterisk/forged (cases.tsv).
type forgedCase struct {
	name string
	evs  []ami.SecurityEvent
}

// forgedCases splits ami-forged.raw into its cases by the start/end times
// of cases.tsv.
func forgedCases(t testing.TB) []forgedCase {
	t.Helper()
	tsv, err := os.ReadFile(filepath.Join(testdataDir(t, "asterisk"), "forged", "cases.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	type span struct {
		name       string
		start, end float64
	}
	var spans []span
	for i, l := range strings.Split(strings.TrimSpace(string(tsv)), "\n") {
		f := strings.Split(l, "\t")
		if i == 0 || len(f) < 3 {
			continue
		}
		s, err1 := strconv.ParseFloat(f[1], 64)
		e, err2 := strconv.ParseFloat(f[2], 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("cases.tsv line %d: %q", i+1, l)
		}
		spans = append(spans, span{f[0], s, e})
	}
	out := make([]forgedCase, len(spans))
	for i, s := range spans {
		out[i].name = s.name
	}
	for _, ev := range loadEvents(t, "forged/ami-forged.raw", nil) {
		ts := float64(ev.Time.UnixNano()) / 1e9
		i := slices.IndexFunc(spans, func(s span) bool { return ts >= s.start-0.5 && ts <= s.end+0.5 })
		if i < 0 {
			t.Fatalf("event %s at %s is in no case of cases.tsv", ev.Type, ev.Time)
		}
		out[i].evs = append(out[i].evs, ev)
	}
	return out
}

var (
	victim   = netip.MustParseAddr("198.51.100.63") // the address a forger names
	fetcher  = netip.MustParseAddr("198.51.100.61") // fetched the nonces case2/case6 reuse
	mistyped = netip.MustParseAddr("198.51.100.62") // ref: a real phone with a mistyped password
)

// Every recorded forged case, replayed on its own, against the victim
// address unknown and known (authenticated the day before, or allowed by a
// callback as a learned/static allow would be). A known address is banned
// only by the TCP case; UDP failures flag it. Blind evidence is counted.
func TestForgedCases(t *testing.T) {
	type want struct {
		events     int
		banUnknown int    // event (1-based) at which an unknown victim is banned; 0 never
		banKnown   int    // same for a known victim
		blind      int    // blind challenge responses counted
		unanswered int    // unanswered challenges counted
		knownFlag  string // the note a known victim gets ("" none)
	}
	wants := map[string]want{
		"ref-wrongthenright":     {events: 3},
		"case1-udp":              {events: 5, banUnknown: 5, blind: 5, knownFlag: failmem.FlagKnown},
		"case2-prep-61":          {events: 1},
		"case2-udp":              {events: 5, banUnknown: 5, knownFlag: failmem.FlagKnown},
		"case3-udp":              {events: 10, banUnknown: 9, knownFlag: failmem.FlagKnown},
		"case4-udp":              {events: 5, unanswered: 5},
		"case5a-udp-from7777":    {events: 10, banUnknown: 9, knownFlag: failmem.FlagKnown},
		"case5b-udp-from1001":    {events: 5, unanswered: 5},
		"case1-tcp":              {events: 5, banUnknown: 5, banKnown: 5, blind: 5},
		"case6-prep-61":          {events: 1},
		"case6-udp-blindpair":    {events: 3, unanswered: 3},
		"case6-prep-61-v2":       {events: 1},
		"case6-udp-blindpair-v2": {events: 6},
	}
	cases := forgedCases(t)
	if len(cases) != len(wants) {
		t.Fatalf("%d cases in cases.tsv, want %d", len(cases), len(wants))
	}
	for _, c := range cases {
		w, ok := wants[c.name]
		if !ok {
			t.Fatalf("case %s: no expectation", c.name)
		}
		if len(c.evs) != w.events {
			t.Fatalf("case %s: %d events, want %d", c.name, len(c.evs), w.events)
		}
		for _, mode := range []string{"unknown", "known by auth", "known by allow"} {
			t.Run(c.name+"/"+mode, func(t *testing.T) {
				r := newMemReplay(t, func(o *failmem.Options) {
					if mode == "known by allow" {
						o.Allowed = func(a netip.Addr) bool { return a == victim }
					}
				})
				if mode == "known by auth" {
					r.mem.MarkKnown(victim, c.evs[0].Time.Add(-24*time.Hour))
				}
				banAt := 0
				for i, ev := range c.evs {
					v := r.feed(ev, ev.Time)
					if v.Ban && ev.Remote.Addr() == victim && banAt == 0 {
						banAt = i + 1
					}
				}
				r.tick(c.evs[len(c.evs)-1].Time.Add(time.Minute))
				wantBan := w.banUnknown
				if mode != "unknown" {
					wantBan = w.banKnown
				}
				if banAt != wantBan {
					t.Errorf("banned at event %d, want %d (0: never)", banAt, wantBan)
				}
				for _, a := range []netip.Addr{fetcher, mistyped} {
					for _, v := range r.verdicts[a] {
						if v.Ban {
							t.Errorf("%s banned: %+v", a, v)
						}
					}
				}
				if n := r.mem.Blind(victim); n != w.blind {
					t.Errorf("blind = %d, want %d", n, w.blind)
				}
				if n := r.mem.Unanswered(victim); n != w.unanswered {
					t.Errorf("unanswered = %d, want %d", n, w.unanswered)
				}
				var flags []string
				for _, v := range r.verdicts[victim] {
					if v.Flag != "" {
						flags = append(flags, v.Flag)
					}
				}
				if w.blind > 0 && !slices.Contains(flags, failmem.FlagBlind) {
					t.Errorf("flags %q: no blind-evidence note", flags)
				}
				if w.unanswered > 0 && !slices.Contains(flags, failmem.FlagUnanswered) {
					t.Errorf("flags %q: no unanswered-challenges note", flags)
				}
				if mode != "unknown" && w.knownFlag != "" && !slices.Contains(flags, w.knownFlag) {
					t.Errorf("flags %q: want %q", flags, w.knownFlag)
				}
			})
		}
	}
}

// The whole forged recording in order against a victim that authenticated
// the day before: the 23 UDP failures of cases 1, 2, 3, 5a and 6 only flag
// it; the first case over TCP bans it at its 5th event. Unknown, the
// victim is banned at case1's 5th forged packet — the hole this closes.
func TestForgedRecordingKnownVictim(t *testing.T) {
	cases := forgedCases(t)
	for _, known := range []bool{true, false} {
		r := newMemReplay(t, nil)
		if known {
			r.mem.MarkKnown(victim, cases[0].evs[0].Time.Add(-24*time.Hour))
		}
		var banCase string
		banEvent := 0
		for _, c := range cases {
			for i, ev := range c.evs {
				if v := r.feed(ev, ev.Time); v.Ban && ev.Remote.Addr() == victim && banCase == "" {
					banCase, banEvent = c.name, i+1
				}
			}
		}
		want := "case1-tcp"
		if !known {
			want = "case1-udp"
		}
		if banCase != want || banEvent != 5 {
			t.Errorf("known=%v: banned in %s at event %d, want %s at 5", known, banCase, banEvent, want)
		}
		if known && !slices.ContainsFunc(r.verdicts[victim], func(v failmem.Verdict) bool { return v.Flag == failmem.FlagKnown }) {
			t.Errorf("known victim never flagged: %+v", r.verdicts[victim])
		}
	}
}

// Past known_max_failures (lowered to 20 here) UDP failures ban a known
// address too; with 0 they never do.
func TestForgedKnownMaxFailures(t *testing.T) {
	cases := forgedCases(t)
	for _, limit := range []int{20, 0} {
		r := newMemReplay(t, func(o *failmem.Options) { o.KnownMaxFailures = limit })
		r.mem.MarkKnown(victim, cases[0].evs[0].Time.Add(-time.Hour))
		banned := ""
		for _, c := range cases {
			if c.name == "case1-tcp" {
				break
			}
			for _, ev := range c.evs {
				if v := r.feed(ev, ev.Time); v.Ban && ev.Remote.Addr() == victim && banned == "" {
					banned = v.Reason
				}
			}
		}
		if limit == 20 && !strings.Contains(banned, "known_max_failures 20") {
			t.Errorf("limit 20: ban %q, want one past known_max_failures", banned)
		}
		if limit == 0 && banned != "" {
			t.Errorf("limit 0 (off): banned %q", banned)
		}
	}
}
