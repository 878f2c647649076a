package state

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestDroppedSaveMergeRead(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Before any save the table does not exist: readers answer empty.
	if got, err := s.DroppedSources(ctx, time.Time{}); err != nil || got != nil {
		t.Fatalf("before any save: %v, %v", got, err)
	}
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	a := netip.MustParseAddr("203.0.113.66")
	err = s.SaveDropped(ctx, []DroppedSource{
		{Addr: a, Country: "XX", FirstSeen: t0, LastSeen: t0.Add(time.Second), Packets: 3, Reasons: []string{"geo"},
			Protos: []string{"udp"}, LastPort: 5060, Methods: []string{"REGISTER"}, UserAgent: "Bria Push Service",
			PushParams: []string{"pn-provider", "pn-prid"}, Push: PushCandidate, PushAt: t0},
		{Addr: netip.MustParseAddr("2001:db8::1"), Country: "YY", FirstSeen: t0, LastSeen: t0, Packets: 1,
			Reasons: []string{"ban"}, Protos: []string{"tcp"}, LastPort: 5061},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The same source evicted from memory and seen again: a delta.
	err = s.SaveDropped(ctx, []DroppedSource{
		{Addr: a, FirstSeen: t0.Add(time.Minute), LastSeen: t0.Add(2 * time.Minute), Packets: 2, Reasons: []string{"ban"},
			Protos: []string{"udp"}, Methods: []string{"INVITE", "WEIRD"}, PushParams: []string{"pn-param"}, Push: PushProbation, PushAt: t0.Add(time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	got, err := ro.DroppedSources(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := DroppedSource{Addr: a, Country: "XX", FirstSeen: t0, LastSeen: t0.Add(2 * time.Minute), Packets: 5,
		Reasons: []string{"ban", "geo"}, Protos: []string{"udp"}, LastPort: 5060, Methods: []string{"REGISTER", "INVITE", "other"},
		UserAgent: "Bria Push Service", PushParams: []string{"pn-provider", "pn-prid", "pn-param"}, Push: PushProbation, PushAt: t0.Add(time.Minute)}
	if len(got) != 2 || !reflect.DeepEqual(got[0], want) || got[1].Addr != netip.MustParseAddr("2001:db8::1") {
		t.Fatalf("got %+v\nwant first %+v", got, want)
	}
	if recent, _ := ro.DroppedSources(ctx, t0.Add(time.Minute)); len(recent) != 1 || recent[0].Addr != a {
		t.Fatalf("since filter: %+v", recent)
	}
	cc, err := ro.DroppedCountries(ctx, t0, 1)
	if err != nil || len(cc) != 1 || cc[0] != (CountryCount{Country: "XX", Sources: 1, Packets: 5}) {
		t.Fatalf("top country: %+v, %v", cc, err)
	}
	if err := ro.SaveDropped(ctx, got); err != ErrReadOnly {
		t.Fatalf("read-only save: %v", err)
	}
	if n, err := s.PruneDropped(ctx, t0.Add(time.Minute), 0); err != nil || n != 1 {
		t.Fatalf("prune: %d, %v", n, err)
	}
}

func TestDroppedPruneCapsRows(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	var recs []DroppedSource
	for i := range 10 {
		at := t0.Add(time.Duration(i) * time.Second)
		recs = append(recs, DroppedSource{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), FirstSeen: at, LastSeen: at, Packets: 1})
	}
	if err := s.SaveDropped(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneDropped(ctx, t0, 4); err != nil || n != 6 {
		t.Fatalf("prune to 4 rows: deleted %d, %v", n, err)
	}
	rows, _ := s.DroppedSources(ctx, time.Time{})
	if len(rows) != 4 || rows[0].Addr != netip.AddrFrom4([4]byte{203, 0, 113, 9}) || rows[3].Addr != netip.AddrFrom4([4]byte{203, 0, 113, 6}) {
		t.Fatalf("kept %+v, want the 4 most recent", rows)
	}
	if n, err := s.PruneDropped(ctx, t0, 4); err != nil || n != 0 {
		t.Fatalf("within the cap: deleted %d, %v", n, err)
	}
}

// BenchmarkSaveDropped: one flush of 10k sources (a flood's worth).
func BenchmarkSaveDropped(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	recs := make([]DroppedSource, 10_000)
	now := time.Now()
	for i := range recs {
		recs[i] = DroppedSource{Addr: netip.MustParseAddr(fmt.Sprintf("203.0.%d.%d", i/256, i%256)), Country: "XX",
			FirstSeen: now, LastSeen: now, Packets: 1, Reasons: []string{"geo"}, Protos: []string{"udp"}, Methods: []string{"REGISTER"}, UserAgent: "friendly-scanner"}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.SaveDropped(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "rows/s")
}
