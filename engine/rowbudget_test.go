package engine

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/state"
)

// floodAddr is the i-th flood source (2001:db8::/32, abroad for testGeo).
func floodAddr(i int) netip.Addr {
	var b [16]byte
	b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return netip.AddrFrom16(b)
}

// budgetRig is an engine without Run (the test flushes), counting but
// never banning a flood's failures unless cfg says otherwise.
func budgetRig(t *testing.T, cfg func(*Options)) *rig {
	return newRig(t, rigOpt{noRun: true, cfg: func(c *Options) {
		c.MaxFailures, c.SlowMaxFailures, c.EnumAccounts, c.KnownMaxFailures = 1000, 0, 0, 0
		if cfg != nil {
			cfg(c)
		}
	}})
}

// fail is one failed login of addr.
func fail(a netip.Addr, n int) ami.SecurityEvent {
	return ev(ami.EventChallengeResponseFailed, "1001", a.String(), "s"+strconv.Itoa(n))
}

// budgetedFlush runs one of Run's flushes and returns the source rows it
// handed the writer.
func budgetedFlush(t *testing.T, r *rig) int {
	t.Helper()
	before := r.eng.sources.rowsWritten.Load()
	if err := r.eng.flushBudgeted(context.Background()); err != nil {
		t.Fatal(err)
	}
	return int(r.eng.sources.rowsWritten.Load() - before)
}

// dbSources is the DB's source rows by address (sessions merged).
func dbSources(t *testing.T, r *rig) map[netip.Addr]state.SourceRecord {
	t.Helper()
	recs, err := r.store.Sources(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[netip.Addr]state.SourceRecord, len(recs))
	for _, rec := range recs {
		m[rec.Addr] = rec
	}
	return m
}

// checkDirtyList walks the dirty list: every entry dirty, in the table,
// once, as many as dirtyLen, never more than the table holds.
func checkDirtyList(t *testing.T, e *Engine) {
	t.Helper()
	st := &e.sources
	st.tableMu.Lock()
	defer st.tableMu.Unlock()
	n := 0
	var prev *srcState
	for s := st.dirtyHead; s != nil; s = s.dirtyNext {
		if !s.dirty || s.dirtyPrev != prev || st.byAddr[keyOf(s.src.Addr)] != s {
			t.Fatalf("dirty list entry %s: dirty %v, linked back %v, in table %v", s.src.Addr, s.dirty, s.dirtyPrev == prev, st.byAddr[keyOf(s.src.Addr)] == s)
		}
		prev = s
		n++
	}
	if prev != st.dirtyTail || n != st.dirtyLen || n > len(st.byAddr) {
		t.Fatalf("dirty list: %d walked, dirtyLen %d, table %d, tail ok %v", n, st.dirtyLen, len(st.byAddr), prev == st.dirtyTail)
	}
}

// A flood of distinct sources over the budget: Run's flushes write at most
// srcRowRate source rows in any second of the clock, and every source's
// row reaches the DB with its latest counts — after enough flushes, or at
// once on Sync or Close.
func TestSourceRowBudgetFlood(t *testing.T) {
	const (
		sources = 3000 // 3 rows a source unbudgeted: 9000 rows in 0.9 s
		rounds  = 3
		perStep = 1000 // events per 100 ms: 10k events/s
	)
	for _, end := range []string{"drain", "sync", "close"} {
		t.Run(end, func(t *testing.T) {
			r := budgetRig(t, nil)
			t0 := r.clock.Now()
			perSecond := map[int64]int{}
			flush := func() {
				perSecond[r.clock.Now().Unix()] += budgetedFlush(t, r)
			}
			n := 0
			for range rounds {
				for i := range sources {
					r.eng.Handle(context.Background(), fail(floodAddr(i), n))
					n++
					if n%perStep == 0 {
						r.clock.Advance(flushInterval)
						flush()
						checkDirtyList(t, r.eng)
					}
				}
			}
			// The lag is visible: rows wait, the oldest no longer than the
			// flood lasted.
			lag := r.eng.Snapshot().SourceRows
			if elapsed := r.clock.Now().Sub(t0); lag.Waiting == 0 || lag.OldestWait <= 0 || lag.OldestWait > elapsed {
				t.Fatalf("after the flood (%v): %+v", elapsed, lag)
			}
			switch end {
			case "drain":
				for step := 0; r.eng.Snapshot().SourceRows.Waiting > 0; step++ {
					if step > 10*(sources*rounds/srcRowRate+10) {
						t.Fatalf("%d rows still wait after %d flushes", r.eng.Snapshot().SourceRows.Waiting, step)
					}
					r.clock.Advance(flushInterval)
					flush()
				}
			case "sync":
				if err := r.eng.Sync(context.Background()); err != nil {
					t.Fatal(err)
				}
			case "close":
				if err := r.eng.Close(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			total := 0
			for sec, rows := range perSecond {
				total += rows
				if rows > srcRowRate {
					t.Errorf("second %d: %d source rows written by Run's flushes, budget %d", sec, rows, srcRowRate)
				}
			}
			if end == "drain" && total >= sources*rounds {
				t.Errorf("%d rows written for %d sources × %d changes: nothing coalesced", total, sources, rounds)
			}
			if st := r.eng.Snapshot().SourceRows; st.Waiting != 0 || st.OldestWait != 0 {
				t.Errorf("after %s: %+v", end, st)
			}
			db := dbSources(t, r)
			for i := range sources {
				a := floodAddr(i)
				rec, ok := db[a]
				switch {
				case !ok:
					t.Fatalf("no row for %s", a)
				case rec.Counts.AuthFailed != rounds:
					t.Fatalf("%s: %d failures in the DB, want its latest count %d", a, rec.Counts.AuthFailed, rounds)
				}
			}
			t.Logf("%s: %d source rows by Run's flushes for %d changes", end, total, sources*rounds)
		})
	}
}

// Normal traffic: a source changing every 100 ms is written at every flush,
// its row current each time.
func TestSourceRowBudgetQuiet(t *testing.T) {
	r := budgetRig(t, nil)
	a := netip.MustParseAddr("203.0.113.7")
	for i := range 30 {
		r.eng.Handle(context.Background(), fail(a, i))
		r.clock.Advance(flushInterval)
		if got := budgetedFlush(t, r); got != 1 {
			t.Fatalf("flush %d wrote %d source rows, want 1", i, got)
		}
		if rec := dbSources(t, r)[a]; rec.Counts.AuthFailed != i+1 {
			t.Fatalf("flush %d: the DB says %d failures, want %d", i, rec.Counts.AuthFailed, i+1)
		}
		if st := r.eng.Snapshot().SourceRows; st.Waiting != 0 {
			t.Fatalf("flush %d: %d rows wait", i, st.Waiting)
		}
	}
}

// Evicted sources' rows reach the DB through the budget, and get their
// share of it while the dirty list is long too; the dirty list never
// holds more than the table.
func TestSourceRowBudgetEvicted(t *testing.T) {
	const maxSources, sources = 500, 4000
	r := budgetRig(t, func(c *Options) { c.MaxSources = maxSources })
	n := 0
	sawShare := false
	for i := range sources {
		r.eng.Handle(context.Background(), fail(floodAddr(i), n))
		n++
		if n%1000 != 0 {
			continue
		}
		t0 := &r.eng.sources
		t0.tableMu.Lock()
		evictedBefore, dirtyBefore := len(t0.evictedRows), t0.dirtyLen
		t0.tableMu.Unlock()
		r.clock.Advance(flushInterval)
		wrote := budgetedFlush(t, r)
		t0.tableMu.Lock()
		evictedTaken := evictedBefore - len(t0.evictedRows)
		t0.tableMu.Unlock()
		if evictedBefore > wrote && dirtyBefore > wrote {
			// Both wait beyond this flush: evicted rows get half.
			if evictedTaken < wrote/2 {
				t.Errorf("flush wrote %d rows, %d of them evicted ones (%d waited): starved", wrote, evictedTaken, evictedBefore)
			}
			if wrote-evictedTaken < wrote/2-1 {
				t.Errorf("flush wrote %d rows, %d of the dirty list (%d waited): starved", wrote, wrote-evictedTaken, dirtyBefore)
			}
			sawShare = true
		}
		checkDirtyList(t, r.eng)
	}
	if !sawShare {
		t.Fatal("no flush had both kinds of rows waiting beyond its budget")
	}
	for step := 0; r.eng.Snapshot().SourceRows.Waiting > 0; step++ {
		if step > 10*(sources/srcRowRate+10) {
			t.Fatalf("%d rows still wait after %d flushes", r.eng.Snapshot().SourceRows.Waiting, step)
		}
		r.clock.Advance(flushInterval)
		budgetedFlush(t, r)
	}
	st := r.eng.Snapshot()
	if st.Evicted != sources-maxSources || st.DroppedSource != 0 {
		t.Fatalf("evicted %d (want %d), dropped rows %d", st.Evicted, sources-maxSources, st.DroppedSource)
	}
	db := dbSources(t, r)
	for i := range sources {
		if rec, ok := db[floodAddr(i)]; !ok || rec.Counts.AuthFailed != 1 {
			t.Fatalf("source %d: in the DB %v, %d failures", i, ok, rec.Counts.AuthFailed)
		}
	}
}

// A ban's row is written at the next flush while the source rows are over
// their budget (the budget holds back only source rows).
func TestSourceRowBudgetBanNotHeld(t *testing.T) {
	r := budgetRig(t, func(c *Options) { c.MaxFailures = 5 })
	for i := range 5000 {
		r.eng.Handle(context.Background(), fail(floodAddr(i), i))
	}
	r.clock.Advance(flushInterval)
	budgetedFlush(t, r)
	attacker := netip.MustParseAddr("203.0.113.66")
	for i := range 5 {
		r.eng.Handle(context.Background(), fail(attacker, i))
	}
	if !r.banned(attacker.String()) {
		t.Fatal("attacker not banned")
	}
	// Same instant: this second's source rows are spent.
	if got := budgetedFlush(t, r); got != 0 {
		t.Errorf("a flush with the budget spent wrote %d source rows", got)
	}
	bans, err := r.store.Bans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 1 || bans[0].Addr != attacker {
		t.Fatalf("ban rows after the flush: %+v", bans)
	}
	if w := r.eng.Snapshot().SourceRows.Waiting; w < 4000 {
		t.Errorf("only %d source rows wait: the flood was not over the budget", w)
	}
}

// The budget's pacing: a second's allowance is spent at most once, spread
// over its flushes, and a new second starts afresh.
func TestRowBudgetAllowance(t *testing.T) {
	sec := time.Date(2026, 12, 7, 22, 0, 0, 0, time.UTC).UnixNano()
	ms := int64(time.Millisecond)
	fi := int64(flushInterval)
	perFlush := srcRowRate * int(flushInterval) / int(time.Second)
	for _, tc := range []struct {
		name  string
		spend []int64 // flush times (ns after sec), each spending its whole allowance
		want  []int
	}{
		{"flushes every interval", []int64{0, fi, 2 * fi, int64(time.Second) - fi}, []int{perFlush, perFlush, perFlush, srcRowRate - 3*perFlush}},
		{"one late flush gets the second's rest", []int64{950 * ms, 990 * ms}, []int{srcRowRate, 0}},
		{"a new second starts afresh", []int64{999 * ms, 1000 * ms, 1000*ms + fi}, []int{srcRowRate, perFlush, perFlush}},
		// Mid-second: what the elapsed part and one interval allow, once.
		{"the same instant twice", []int64{500 * ms, 500 * ms}, []int{srcRowRate * int(500*ms+fi) / int(time.Second), 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b rowBudget
			for i, at := range tc.spend {
				got := b.allowance(sec + at)
				if got != tc.want[i] {
					t.Errorf("flush %d at +%v: allowance %d, want %d", i, time.Duration(at), got, tc.want[i])
				}
				b.spend(got)
			}
		})
	}
}
