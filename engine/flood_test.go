package engine

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// randomSource returns a random global unicast IPv4 address outside TEST-NET
// and the test's home prefix (so every source is "foreign" and distinct).
func randomSource(rng *rand.Rand) netip.Addr {
	for {
		v := rng.Uint32()
		a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if a.IsGlobalUnicast() && !a.IsPrivate() && !testGeo.Allowed(a) {
			return a
		}
	}
}

// 2 × 100k events from distinct random sources: the source table stays at
// max_sources and the heap does not grow with the second 100k.
func TestFloodMemoryBounded(t *testing.T) {
	const maxSources = 10000
	// The failure memory is bounded too (MaxTracked, default 1M addresses):
	// here just above the 10k aggregates, so the second 100k must not grow
	// the heap either.
	r := newRig(t, rigOpt{noRun: true, cfg: func(c *Options) { c.MaxSources, c.MaxTracked = maxSources, 2*maxSources }})
	rng := rand.New(rand.NewPCG(1, 2))
	flood := func() {
		for i := range 100000 {
			e := ev(ami.EventInvalidAccountID, "user"+strconv.Itoa(i%50), randomSource(rng).String(), "")
			r.eng.Handle(context.Background(), e)
		}
	}
	base := heapAlloc()
	flood()
	first := heapAlloc()
	flood()
	second := heapAlloc()
	st := r.eng.Snapshot()
	if st.Sources != maxSources {
		t.Errorf("%d sources in memory, want the cap %d", st.Sources, maxSources)
	}
	// A few random addresses repeat; every other one evicted an older one.
	if st.Evicted < 200000-maxSources-100 {
		t.Errorf("%d evicted, want about %d", st.Evicted, 200000-maxSources)
	}
	if st.DroppedWrites == 0 {
		t.Error("no writer ran, yet no event-log row was dropped: the pending log is unbounded")
	}
	t.Logf("heap: base %d KiB, after 100k %d KiB, after 200k %d KiB", base>>10, first>>10, second>>10)
	// One source costs well under 1 KiB; pending writes are capped too.
	if grow := int64(first) - int64(base); grow > 48<<20 {
		t.Errorf("heap grew by %d MiB for a 10k-source cap", grow>>20)
	}
	if grow := int64(second) - int64(first); grow > 4<<20 {
		t.Errorf("heap grew by %d MiB over the second 100k sources: not bounded", grow>>20)
	}
	if len(r.eng.sources.byAddr) != maxSources || r.eng.lruLen() != maxSources {
		t.Errorf("map %d, LRU %d", len(r.eng.sources.byAddr), r.eng.lruLen())
	}
}

func (e *Engine) lruLen() int {
	e.sources.tableMu.Lock()
	defer e.sources.tableMu.Unlock()
	n := 0
	for s := e.sources.lruHead; s != nil; s = s.next {
		n++
	}
	return n
}

// Idle sources are evicted by age; their DB rows stay.
func TestEvictByAge(t *testing.T) {
	r := newRig(t, rigOpt{})
	for i := range 3 {
		r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "100", "203.0.113."+strconv.Itoa(100+i), ""))
	}
	r.clock.Advance(time.Hour)
	r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "100", "203.0.113.200", ""))
	r.clock.Advance(r.opts.SlowFindTime - 30*time.Minute)
	r.eng.Sweep()
	if n := r.eng.Snapshot().Sources; n != 1 {
		t.Errorf("%d sources after the sweep, want only the one seen within slow_find_time", n)
	}
	r.sync()
	if rec := r.record("203.0.113.100"); rec.Counts.UnknownAccount != 1 {
		t.Errorf("evicted source's record %+v", rec)
	}
	// It comes back: a new session row; Sources merges both.
	r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "101", "203.0.113.100", ""))
	r.sync()
	if rec := r.record("203.0.113.100"); rec.Counts.UnknownAccount != 2 || rec.DistinctAccounts != 2 {
		t.Errorf("merged record %+v", rec)
	}
}

// A full ban set refuses with a logged warning and never crashes: first the
// engine's own cap (firewall.ban_maxelem), then the backend's ErrSetFull.
func TestBanSetFull(t *testing.T) {
	ban := func(r *rig, a string) {
		for i := range 5 {
			r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", a, strconv.Itoa(i)))
		}
	}
	r := newRig(t, rigOpt{cfg: func(c *Options) { c.BanMaxElem = 3 }})
	for i := range 5 {
		ban(r, "203.0.113."+strconv.Itoa(10+i))
	}
	st := r.eng.Snapshot()
	if st.ActiveBans != 3 || st.FullRefusals != 2 {
		t.Errorf("active %d, full refusals %d; want 3 and 2", st.ActiveBans, st.FullRefusals)
	}
	if !strings.Contains(r.logs.String(), "ban set is full") {
		t.Error("refusal not logged")
	}
	// Expiry frees room.
	r.clock.Advance(2 * time.Hour)
	r.eng.Sweep()
	r.clock.Advance(time.Hour) // past the quiet period of the refused ones
	ban(r, "203.0.113.14")
	if !r.banned("203.0.113.14") {
		t.Error("not banned after expiry freed the set")
	}

	// The backend is smaller than the engine thinks: ErrSetFull from Add.
	r2 := newRig(t, rigOpt{maxElem: 2})
	for i := range 4 {
		ban(r2, "203.0.113."+strconv.Itoa(20+i))
	}
	st = r2.eng.Snapshot()
	if st.ActiveBans != 2 || st.FullRefusals != 2 || st.Decisions[DecisionBan] != 2 {
		t.Errorf("snapshot %+v", st)
	}
	if !strings.Contains(r2.logs.String(), "firewall: set is full") {
		t.Error("backend refusal not logged")
	}
	r2.sync()
	if rec := r2.record("203.0.113.23"); rec.Status == "banned" {
		t.Error("refused ban recorded as banned")
	}
}

// BenchmarkSourceMemory reports the heap cost of one source aggregate in
// memory (3 failures over 3 accounts each), for sizing engine.max_sources.
func BenchmarkSourceMemory(b *testing.B) {
	const n = 50000
	rng := rand.New(rand.NewPCG(5, 6))
	srcs := make([]string, n)
	for i := range srcs {
		srcs[i] = randomSource(rng).String()
	}
	for range b.N {
		cfg := testConfig()
		cfg.MaxSources, cfg.EnumAccounts, cfg.MaxFailures, cfg.SlowMaxFailures = 1<<20, 0, 100, 0
		e, err := New(cfg, Deps{Firewall: &countingFW{}, Geo: testGeo, Resolver: noDNS{}, HostAddrs: []netip.Addr{}})
		if err != nil {
			b.Fatal(err)
		}
		base := heapAlloc()
		for round := range 3 {
			for i, a := range srcs {
				e.Handle(context.Background(), ev(ami.EventInvalidAccountID, "user"+strconv.Itoa(i%50+round), a, "1-"+strconv.Itoa(i)+"@x"))
			}
			e.Flush(context.Background()) // no store: drops the pending rows
		}
		after := heapAlloc()
		b.ReportMetric(float64(after-base)/n, "B/source")
		runtime.KeepAlive(e)
	}
}

// More stored bans than the set holds: the longest-running ones are
// restored, the rest left out with a warning, and Start still succeeds.
func TestRestoreMoreBansThanSetHolds(t *testing.T) {
	clock := newClock()
	dbPath := t.TempDir() + "/sipsentry.db"
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	for n, a := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"} {
		for i := range 5 {
			r1.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", a, strconv.Itoa(i)))
		}
		clock.Advance(time.Duration(n+1) * time.Minute)
	}
	r1.stop()
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath, cfg: func(c *Options) { c.BanMaxElem = 2 }})
	if r2.banned("203.0.113.1") || !r2.banned("203.0.113.2") || !r2.banned("203.0.113.3") {
		t.Error("want the two latest bans restored and the oldest left out")
	}
	if !strings.Contains(r2.logs.String(), "stored bans left out") {
		t.Error("left-out bans not logged")
	}
}

// A flood with the writer running: every event is either in the event log
// or counted as dropped, and the DB stays readable.
func TestFloodWithStore(t *testing.T) {
	r := newRig(t, rigOpt{cfg: func(c *Options) { c.MaxSources = 5000 }})
	rng := rand.New(rand.NewPCG(7, 8))
	const n = 20000 // enough to overflow 5000 sources; small enough for -race on a loaded machine
	for range n {
		r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "u", randomSource(rng).String(), ""))
	}
	r.sync()
	sum, err := r.store.Summary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st := r.eng.Snapshot()
	if uint64(sum.Events)+st.DroppedWrites != n {
		t.Errorf("%d logged + %d dropped != %d events", sum.Events, st.DroppedWrites, n)
	}
	if uint64(sum.Sources)+st.DroppedSource < n-100 { // a few random repeats
		t.Errorf("%d source rows + %d dropped for ~%d sources", sum.Sources, st.DroppedSource, n)
	}
	if st.Sources != 5000 {
		t.Errorf("%d sources in memory", st.Sources)
	}
	t.Logf("logged %d, dropped %d event rows; %d source rows, dropped %d", sum.Events, st.DroppedWrites, sum.Sources, st.DroppedSource)
}
