package dropwatch

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipsentry/sipsentry/dropwatch/nflog"
	"github.com/sipsentry/sipsentry/dropwatch/sip"
	"github.com/sipsentry/sipsentry/state"
)

// TestWatcherAggregatesAndFlushes: dropped packets of a scanner and a push
// server are counted per reason and country, aggregated per source, and
// flushed to the state DB, where DroppedSources reads them back; the push
// server's REGISTER (country rule) becomes a candidate, the banned
// scanner's never does.
func TestWatcherAggregatesAndFlushes(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(filepath.Join(t.TempDir(), state.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	wld := newWorld(t, nil)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	w := New(Options{Store: st, Probation: wld.p, Now: func() time.Time { return now },
		Country: func(a netip.Addr) string {
			if a.Is4() {
				return "XX"
			}
			return "YY"
		}})
	scanner := netip.MustParseAddrPort("[2001:db8::66]:5070")
	for range 3 {
		w.Observe(udpDrop(t, nflog.ReasonBan, scanner, register("friendly-scanner", "")))
	}
	w.Observe(udpDrop(t, nflog.ReasonBan, scanner, "OPTIONS sip:100@198.51.100.1 SIP/2.0\r\nUser-Agent: sipvicious\r\n\r\n"))
	w.Observe(udpDrop(t, nflog.ReasonBan, scanner, "\x00\x01 not SIP"))
	// The banned scanner forges a push UA: still no candidate (banned).
	w.Observe(udpDrop(t, nflog.ReasonBan, scanner, register("Bria Push Service", pushParams)))
	push := netip.MustParseAddrPort("203.0.113.66:5060")
	w.Observe(udpDrop(t, nflog.ReasonGeo, push, register("Bria Push Service", pushParams)))

	if got := testutil.ToFloat64(w.packets.WithLabelValues("ban", "YY")); got != 6 {
		t.Errorf("ban/YY packets %v, want 6", got)
	}
	if got := testutil.ToFloat64(w.packets.WithLabelValues("geo", "XX")); got != 1 {
		t.Errorf("geo/XX packets %v, want 1", got)
	}
	if got := testutil.ToFloat64(w.sipPackets); got != 6 {
		t.Errorf("SIP requests %v, want 6", got)
	}
	if testutil.ToFloat64(wld.p.candidates) != 1 || len(wld.p.queue) != 1 {
		t.Fatalf("candidates %v queued %d, want the push server alone", testutil.ToFloat64(wld.p.candidates), len(wld.p.queue))
	}
	wld.p.examine(ctx, <-wld.p.queue)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := st.DroppedSources(ctx, time.Time{})
	if err != nil || len(got) != 2 {
		t.Fatalf("DroppedSources: %+v, %v", got, err)
	}
	by := map[netip.Addr]state.DroppedSource{}
	for _, r := range got {
		by[r.Addr] = r
	}
	s := by[scanner.Addr()]
	if s.Packets != 6 || s.Country != "YY" || s.UserAgent != "Bria Push Service" || len(s.Methods) != 2 ||
		s.Methods[0] != "REGISTER" || s.Methods[1] != "OPTIONS" || s.Reasons[0] != "ban" || s.Push != "" {
		t.Errorf("scanner row %+v", s)
	}
	p := by[push.Addr()]
	if p.Packets != 1 || p.Country != "XX" || p.UserAgent != "Bria Push Service" || len(p.PushParams) != 3 ||
		p.Push != state.PushProbation || p.Reasons[0] != "geo" {
		t.Errorf("push server row %+v", p)
	}
}

// floodDrops are the benchmarks' dropped packets: scanner REGISTERs.
func floodDrops(b *testing.B) []nflog.Drop {
	drops := make([]nflog.Drop, 4096)
	for i := range drops {
		ua := "friendly-scanner"
		if i%7 == 0 {
			ua = "sipcli/v1.8"
		}
		drops[i] = udpDrop(b, nflog.ReasonGeo, netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), 5070), register(ua, ""))
	}
	return drops
}

// BenchmarkParseOnly is BenchmarkObserve's same-run baseline: the SIP
// parse alone, on the same packets.
func BenchmarkParseOnly(b *testing.B) {
	drops := floodDrops(b)
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = sip.Parse(drops[i%len(drops)].Payload)
	}
	b.StopTimer()
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "pkts/cpu-s")
	}
}

// BenchmarkObserve is the per-packet path (decode done by the reader:
// parse, aggregate, count) over many sources, against the same run's
// parse-only baseline in dropwatch/sip.
//
//	go test -run XXX -bench Observe -benchtime 2s -cpu 1 ./dropwatch/
func BenchmarkObserve(b *testing.B) {
	w := New(Options{MaxSources: 100_000, Country: func(netip.Addr) string { return "XX" }})
	drops := floodDrops(b)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d := drops[i%len(drops)]
		// A new source every packet for most of the run: the table fills
		// and evicts, as under a flood from many sources.
		d.Src = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		w.Observe(d)
	}
	b.StopTimer()
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "pkts/cpu-s")
	}
}

// pruneStore records SaveDropped rows and PruneDropped calls.
type pruneStore struct {
	mu      sync.Mutex // guards saved, packets, prunes
	saved   int
	packets uint64
	prunes  []int
}

func (s *pruneStore) SaveDropped(_ context.Context, recs []state.DroppedSource) error {
	s.mu.Lock()
	s.saved += len(recs)
	for _, r := range recs {
		s.packets += r.Packets
	}
	s.mu.Unlock()
	return nil
}

func (s *pruneStore) PruneDropped(_ context.Context, _ time.Time, maxRows int) (int64, error) {
	s.mu.Lock()
	s.prunes = append(s.prunes, maxRows)
	s.mu.Unlock()
	return 0, nil
}

// TestWatcherPrunesByCount: a quarter of MaxRows new sources since the
// last prune trigger a prune at the next flush, long before the 10-minute
// age prune; a final flush saves what is left when ctx ends.
func TestWatcherPrunesByCount(t *testing.T) {
	st := &pruneStore{}
	w := New(Options{Store: st, MaxRows: 40, FlushEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.maintain(ctx, nil) }()
	for i := range 9 { // below 40/4: no prune by count
		w.Observe(udpDrop(t, nflog.ReasonGeo, netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 5060), "x"))
	}
	time.Sleep(100 * time.Millisecond)
	st.mu.Lock()
	early := len(st.prunes)
	st.mu.Unlock()
	if early != 0 {
		t.Fatalf("pruned after 9 new sources (MaxRows 40)")
	}
	w.Observe(udpDrop(t, nflog.ReasonGeo, netip.MustParseAddrPort("203.0.113.200:5060"), "x"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		st.mu.Lock()
		n := len(st.prunes)
		st.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no prune after 10 new sources (a quarter of MaxRows 40)")
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.Observe(udpDrop(t, nflog.ReasonGeo, netip.MustParseAddrPort("203.0.113.201:5060"), "x"))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.saved != 11 || st.prunes[0] != 40 {
		t.Fatalf("saved %d rows (want 11, the last by the final flush), prunes %v", st.saved, st.prunes)
	}
}

// failingStore fails the first save, then records.
type failingStore struct {
	pruneStore
	failed bool
}

func (s *failingStore) SaveDropped(ctx context.Context, recs []state.DroppedSource) error {
	if !s.failed {
		s.failed = true
		return errors.New("disk full")
	}
	return s.pruneStore.SaveDropped(ctx, recs)
}

// TestWatcherKeepsDeltasOnFailedSave: a failed save loses nothing: the
// next flush writes the same packets.
func TestWatcherKeepsDeltasOnFailedSave(t *testing.T) {
	st := &failingStore{}
	w := New(Options{Store: st})
	for range 3 {
		w.Observe(udpDrop(t, nflog.ReasonGeo, netip.MustParseAddrPort("203.0.113.9:5060"), "x"))
	}
	if err := w.Flush(context.Background()); err == nil {
		t.Fatal("the failed save was not reported")
	}
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st.saved != 1 || st.packets != 3 || w.Stats().FlushErrors != 1 {
		t.Fatalf("saved %d rows with %d packets after a failure and a retry, want 1 with 3", st.saved, st.packets)
	}
}

// TestWatcherCollectors: every metric is registrable and named as the
// house wants (sipsentry_ prefix, _total on counters).
func TestWatcherCollectors(t *testing.T) {
	w := New(Options{Probation: NewProbation(ProbationOptions{})})
	reg := prometheus.NewRegistry()
	for _, c := range w.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	w.Observe(udpDrop(t, nflog.ReasonBan, netip.MustParseAddrPort("203.0.113.9:5060"), "x"))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		n := mf.GetName()
		if !strings.HasPrefix(n, "sipsentry_") || (mf.GetType().String() == "COUNTER" && !strings.HasSuffix(n, "_total")) {
			t.Errorf("metric %s", n)
		}
	}
}
