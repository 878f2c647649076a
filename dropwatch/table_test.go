package dropwatch

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/sipsentry/sipsentry/dropwatch/packet"
	"github.com/sipsentry/sipsentry/dropwatch/sip"
)

func TestTableAggregates(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	tab := newTable(8, t0)
	asked := 0
	country := func(netip.Addr) string { asked++; return "XX" }
	a := netip.MustParseAddr("203.0.113.66")
	udp := &packet.Packet{Proto: packet.ProtoUDP, DstPort: 5060}
	reg := &sip.Request{Method: "REGISTER", UserAgent: "Bria Push Service", Push: sip.PNProvider | sip.PNPrid}
	tab.observe(a, t0, "geo", udp, reg, country)
	tab.observe(a, t0.Add(3*time.Second), "ban", udp, &sip.Request{Method: "FOO"}, country)
	tab.observe(a, t0.Add(4*time.Second), "geo", &packet.Packet{Proto: packet.ProtoTCP, DstPort: 5061}, nil, country)
	r, ok := tab.get(a)
	if !ok || asked != 1 {
		t.Fatalf("found %v, country asked %d times (want once)", ok, asked)
	}
	if r.Packets != 3 || r.Country != "XX" || !r.FirstSeen.Equal(t0) || !r.LastSeen.Equal(t0.Add(4*time.Second)) || r.LastPort != 5061 ||
		r.UserAgent != "Bria Push Service" || len(r.Methods) != 2 || r.Methods[0] != "REGISTER" || r.Methods[1] != "other" ||
		len(r.Reasons) != 2 || len(r.Protos) != 2 || len(r.PushParams) != 2 || r.PushParams[1] != "pn-prid" {
		t.Fatalf("aggregate %+v", r)
	}
	recs, _ := tab.drain(100)
	if len(recs) != 1 || recs[0].Packets != 3 {
		t.Fatalf("drain %+v", recs)
	}
	if recs, _ := tab.drain(100); len(recs) != 0 {
		t.Fatalf("second drain without packets: %+v", recs)
	}
	tab.observe(a, t0.Add(5*time.Second), "geo", udp, nil, country)
	if recs, _ := tab.drain(100); len(recs) != 1 || recs[0].Packets != 1 {
		t.Fatalf("after one more packet the delta is %+v", recs)
	}
}

func TestTableEvictsLeastRecentlySeen(t *testing.T) {
	t0 := time.Now()
	tab := newTable(3, t0)
	udp := &packet.Packet{Proto: packet.ProtoUDP, DstPort: 5060}
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}) }
	for i := 1; i <= 3; i++ {
		tab.observe(addr(i), t0, "geo", udp, nil, nil)
	}
	tab.drain(100)
	tab.observe(addr(1), t0, "geo", udp, nil, nil) // 1 is now the most recent: 2 is the oldest
	tab.observe(addr(4), t0, "geo", udp, nil, nil)
	if _, ok := tab.get(addr(2)); ok {
		t.Fatal("the least recently seen source was not evicted")
	}
	for _, i := range []int{1, 3, 4} {
		if _, ok := tab.get(addr(i)); !ok {
			t.Fatalf("source %d evicted", i)
		}
	}
	tab.observe(addr(5), t0, "geo", udp, nil, nil) // evicts 3 (saved, clean)
	tab.observe(addr(6), t0, "geo", udp, nil, nil) // evicts 1 (one unsaved packet)
	if tab.evicted != 3 || tab.len() != 3 {
		t.Fatalf("evicted %d, len %d", tab.evicted, tab.len())
	}
	recs, _ := tab.drain(100)
	found := false
	for _, r := range recs {
		if r.Addr == addr(1) && r.Packets == 1 {
			found = true
		}
	}
	if !found {
		t.Fatalf("the evicted source's unsaved packet is not in the next flush: %+v", recs)
	}
}

// TestTableAgainstModel runs random sightings over a small table and
// checks it against a plain map + recency list after every step: every
// kept source is findable (backward-shift deletion keeps probe runs
// whole), exactly the most recent `capacity` sources are kept.
func TestTableAgainstModel(t *testing.T) {
	const capacity = 50
	tab := newTable(capacity, time.Now())
	rng := rand.New(rand.NewPCG(1, 2))
	var recent []netip.Addr // most recent last
	udp := &packet.Packet{Proto: packet.ProtoUDP}
	for step := 0; step < 20_000; step++ {
		var a netip.Addr
		if rng.IntN(2) == 0 {
			a = netip.AddrFrom4([4]byte{203, 0, 113, byte(rng.IntN(120))})
		} else {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(120))})
		}
		tab.observe(a, time.Now(), "geo", udp, nil, nil)
		for i, r := range recent {
			if r == a {
				recent = append(recent[:i], recent[i+1:]...)
				break
			}
		}
		recent = append(recent, a)
		if len(recent) > capacity {
			recent = recent[1:]
		}
		if tab.len() != len(recent) {
			t.Fatalf("step %d: table holds %d, model %d", step, tab.len(), len(recent))
		}
		if step%97 == 0 {
			n := 0
			for _, s := range tab.index {
				if s >= 0 {
					n++
				}
			}
			if n != len(recent) {
				t.Fatalf("step %d: %d index entries for %d sources", step, n, len(recent))
			}
			for _, r := range recent {
				if _, ok := tab.get(r); !ok {
					t.Fatalf("step %d: %v kept by the model, not found in the table", step, r)
				}
			}
		}
	}
}

// TestTableBudget: the table stays inside the engine's per-address budget
// of 64 bytes (issue 11's failure memory) at 100k sources, measured on the
// heap, with every source from a different address.
func TestTableBudget(t *testing.T) {
	if s := unsafe.Sizeof(slot{}); s != 48 {
		t.Fatalf("slot is %d bytes, want 48", s)
	}
	const n = 100_000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tab := newTable(n, time.Now())
	udp := &packet.Packet{Proto: packet.ProtoUDP, DstPort: 5060}
	req := &sip.Request{Method: "REGISTER", UserAgent: "friendly-scanner"}
	for i := range n {
		tab.observe(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), time.Now(), "geo", udp, req, nil)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / n
	t.Logf("%.1f heap bytes per dropped source at %d sources", per, n)
	if per > 64 {
		t.Fatalf("%.1f bytes per source, budget 64", per)
	}
	runtime.KeepAlive(tab)
}

func TestTableDrainsInChunks(t *testing.T) {
	tab := newTable(100, time.Now())
	udp := &packet.Packet{Proto: packet.ProtoUDP}
	for i := range 10 {
		tab.observe(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), time.Now(), "geo", udp, nil, nil)
	}
	seen := map[netip.Addr]bool{}
	for chunk := 0; ; chunk++ {
		recs, done := tab.drain(3)
		if len(recs) > 3 || chunk > 4 {
			t.Fatalf("chunk %d: %d records", chunk, len(recs))
		}
		for _, r := range recs {
			if seen[r.Addr] {
				t.Fatalf("%v drained twice", r.Addr)
			}
			seen[r.Addr] = true
		}
		if done {
			break
		}
	}
	if len(seen) != 10 {
		t.Fatalf("drained %d of 10", len(seen))
	}
	if recs, done := tab.drain(3); len(recs) != 0 || !done {
		t.Fatalf("nothing changed, yet %d records, done %v", len(recs), done)
	}
}
