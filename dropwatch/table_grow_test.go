package dropwatch

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/sipsentry/sipsentry/dropwatch/packet"
	"github.com/sipsentry/sipsentry/dropwatch/sip"
	"github.com/sipsentry/sipsentry/state"
)

// tableBytes is what the table's own slices hold (their capacities, not
// their lengths): the slots and the index.
func tableBytes(t *table) int {
	return cap(t.slots)*int(unsafe.Sizeof(slot{})) + cap(t.index)*int(unsafe.Sizeof(int32(0)))
}

// TestTableStartsSmall: a new table costs kilobytes whatever its capacity
// (issue 11: 5.9 MB were allocated at start for 100,000 slots whether or
// not a packet was ever dropped); the Watcher's New does not pre-size it.
func TestTableStartsSmall(t *testing.T) {
	const limit = 64 << 10 // 1024 slots × 48 B + 2048 index entries × 4 B = 56 KiB
	for _, capacity := range []int{100_000, 1_000_000} {
		tab := newTable(capacity, time.Now())
		if got := tableBytes(tab); got > limit {
			t.Errorf("capacity %d: a new table holds %d bytes of slots and index, want ≤ %d", capacity, got, limit)
		}
		if len(tab.slots) != initialSlots || len(tab.index) != 2*initialSlots {
			t.Errorf("capacity %d: starts with %d slots and %d index entries, want %d and %d",
				capacity, len(tab.slots), len(tab.index), initialSlots, 2*initialSlots)
		}
	}
	w := New(Options{MaxSources: 1_000_000})
	if got := tableBytes(w.tab); got > limit {
		t.Errorf("New(MaxSources 1,000,000): the table holds %d bytes, want ≤ %d", got, limit)
	}
	// A capacity under the initial size is never exceeded.
	if tab := newTable(3, time.Now()); len(tab.slots) != 3 || len(tab.index) != 8 {
		t.Errorf("capacity 3: %d slots, %d index entries; want 3 and 8", len(tab.slots), len(tab.index))
	}
}

// lruOrder walks the recency list from the most recent source.
func lruOrder(t *testing.T, tab *table) []netip.Addr {
	t.Helper()
	var out []netip.Addr
	for s := tab.head; s >= 0; s = tab.slots[s].next {
		out = append(out, netip.AddrFrom16(tab.slots[s].addr).Unmap())
		if len(out) > int(tab.used) {
			t.Fatal("the recency list has a cycle")
		}
	}
	return out
}

func testAddr(i int) netip.Addr {
	if i%3 == 2 { // a third IPv6, the key is 16 bytes either way
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		binary.BigEndian.PutUint32(b[12:], uint32(i))
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// TestTableGrowsKeepingEverySource fills a table of 5,000 (not a power of
// two) from its initial 1,024 slots, touching earlier sources again as it
// goes, and at every doubling checks that every source is still found with
// its aggregate and that the recency order is the model's.
func TestTableGrowsKeepingEverySource(t *testing.T) {
	const capacity = 5000
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	tab := newTable(capacity, t0)
	type agg struct {
		first, last time.Time
		packets     uint64
		port        uint16
	}
	model := map[netip.Addr]*agg{}
	var recent []netip.Addr // most recent first
	touch := func(a netip.Addr) {
		if i := slices.Index(recent, a); i >= 0 {
			recent = slices.Delete(recent, i, i+1)
		}
		recent = slices.Insert(recent, 0, a)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	req := &sip.Request{Method: "REGISTER", UserAgent: "friendly-scanner"}
	sizes := []int{len(tab.slots)}
	step := 0
	check := func() {
		t.Helper()
		for a, m := range model {
			r, ok := tab.get(a)
			if !ok {
				t.Fatalf("step %d (%d slots): %v not found", step, len(tab.slots), a)
			}
			if r.Packets != m.packets || !r.FirstSeen.Equal(m.first) || !r.LastSeen.Equal(m.last) || r.LastPort != m.port || r.UserAgent != "friendly-scanner" {
				t.Fatalf("step %d (%d slots): %v is %+v, want %+v", step, len(tab.slots), a, r, *m)
			}
		}
		if got := lruOrder(t, tab); !slices.Equal(got, recent) {
			t.Fatalf("step %d (%d slots): recency order differs from the model's", step, len(tab.slots))
		}
	}
	for i := 0; i < capacity; step++ {
		var a netip.Addr
		if i > 0 && rng.IntN(3) == 0 {
			a = testAddr(rng.IntN(i)) // an earlier source again
		} else {
			a = testAddr(i)
			i++
		}
		at := t0.Add(time.Duration(step) * time.Second)
		port := uint16(5060 + step%7)
		before := len(tab.slots)
		tab.observe(a, at, "geo", &packet.Packet{Proto: packet.ProtoUDP, DstPort: port}, req, nil)
		m := model[a]
		if m == nil {
			m = &agg{first: at}
			model[a] = m
		}
		m.last, m.port = at, port
		m.packets++
		touch(a)
		if len(tab.slots) != before {
			sizes = append(sizes, len(tab.slots))
			check()
		}
	}
	check()
	if want := []int{1024, 2048, 4096, capacity}; !slices.Equal(sizes, want) {
		t.Fatalf("slot counts %v, want %v", sizes, want)
	}
	if len(tab.index) != 16384 || tab.evicted != 0 || tab.len() != capacity {
		t.Fatalf("full table: index %d (want 16384), evicted %d, len %d", len(tab.index), tab.evicted, tab.len())
	}
}

// TestTableAtCapacityEvictsAsBefore: a table that grew to its capacity
// behaves exactly like one allocated whole at start (the table before
// issue 11): the same source in the same slot, the same recency list, the
// same evictions and the same flushes, step by step.
func TestTableAtCapacityEvictsAsBefore(t *testing.T) {
	const capacity = 3000
	t0 := time.Now()
	grown, whole := newTable(capacity, t0), newTableSized(capacity, capacity, t0)
	rng := rand.New(rand.NewPCG(5, 6))
	udp := &packet.Packet{Proto: packet.ProtoUDP, DstPort: 5060}
	for step := 0; step < 30_000; step++ {
		// A pool twice the capacity: the table fills, then evicts.
		a := testAddr(rng.IntN(2 * capacity))
		at := t0.Add(time.Duration(step) * time.Second)
		grown.observe(a, at, "ban", udp, nil, nil)
		whole.observe(a, at, "ban", udp, nil, nil)
		if step%1000 == 999 {
			g, gd := grown.drain(700)
			w, wd := whole.drain(700)
			if gd != wd || !slices.EqualFunc(g, w, sameRecord) {
				t.Fatalf("step %d: the grown table flushes %d records (done %v), the whole one %d (done %v)", step, len(g), gd, len(w), wd)
			}
		}
		if grown.used != whole.used || grown.head != whole.head || grown.tail != whole.tail ||
			grown.evicted != whole.evicted || len(grown.pendingEvicted) != len(whole.pendingEvicted) {
			t.Fatalf("step %d: grown (used %d head %d tail %d evicted %d) != whole (used %d head %d tail %d evicted %d)", step,
				grown.used, grown.head, grown.tail, grown.evicted, whole.used, whole.head, whole.tail, whole.evicted)
		}
		if grown.evicted == 1 && whole.evicted == 1 && grown.used != capacity {
			t.Fatalf("step %d: the first eviction came with %d of %d slots used", step, grown.used, capacity)
		}
	}
	if grown.evicted == 0 {
		t.Fatal("the run never reached the capacity")
	}
	if !slices.Equal(grown.slots, whole.slots) || len(grown.index) != len(whole.index) {
		t.Fatal("after the run the grown table's slots or index size differ from the whole one's")
	}
}

func sameRecord(a, b state.DroppedSource) bool {
	return a.Addr == b.Addr && a.Packets == b.Packets && a.FirstSeen.Equal(b.FirstSeen) && a.LastSeen.Equal(b.LastSeen)
}

// tableModel is the table's contract as plain maps: the most recent
// `capacity` sources are kept, every packet is either drained, pending on a
// live source or pending on an evicted one.
type tableModel struct {
	capacity int
	recent   []netip.Addr // most recent first
	observed map[netip.Addr]uint64
	drained  map[netip.Addr]uint64
	first    map[netip.Addr]time.Time
	last     map[netip.Addr]time.Time
}

func (m *tableModel) observe(a netip.Addr, at time.Time) {
	if i := slices.Index(m.recent, a); i >= 0 {
		m.recent = slices.Delete(m.recent, i, i+1)
	} else {
		m.first[a] = at
	}
	m.recent = slices.Insert(m.recent, 0, a)
	if len(m.recent) > m.capacity {
		m.recent = m.recent[:m.capacity]
	}
	m.last[a] = at
	m.observed[a]++
}

// runTableModel decodes ops from data and checks the table against the
// model after each: insert or touch a source, drain a chunk, fail a save
// (requeue). initial small makes a small capacity cross many doublings.
func runTableModel(t *testing.T, capacity, initial int, data []byte) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	tab := newTableSized(capacity, initial, t0)
	m := &tableModel{capacity: capacity, observed: map[netip.Addr]uint64{}, drained: map[netip.Addr]uint64{},
		first: map[netip.Addr]time.Time{}, last: map[netip.Addr]time.Time{}}
	udp := &packet.Packet{Proto: packet.ProtoUDP, DstPort: 5060}
	pool := 2*capacity + 1 // so a full table evicts
	for step := 0; len(data) >= 3; step++ {
		op, arg := data[0], int(binary.BigEndian.Uint16(data[1:3]))
		data = data[3:]
		at := t0.Add(time.Duration(step) * time.Second)
		slotsBefore := len(tab.slots)
		switch {
		case op < 200: // most ops: a packet
			a := testAddr(arg % pool)
			tab.observe(a, at, "geo", udp, nil, nil)
			m.observe(a, at)
		case op < 250:
			recs, _ := tab.drain(1 + arg%64)
			for _, r := range recs {
				if r.Packets == 0 {
					t.Fatalf("step %d: drained %v with no packets", step, r.Addr)
				}
				m.drained[r.Addr] += r.Packets
			}
		default: // a failed save returns its chunk
			recs, _ := tab.drain(1 + arg%64)
			tab.requeue(recs)
		}
		if tab.len() != len(m.recent) || len(tab.slots) > capacity || int(tab.used) > len(tab.slots) {
			t.Fatalf("step %d: table len %d of %d slots (capacity %d), model %d", step, tab.len(), len(tab.slots), capacity, len(m.recent))
		}
		if len(tab.index) < 2*len(tab.slots) {
			t.Fatalf("step %d: index %d for %d slots", step, len(tab.index), len(tab.slots))
		}
		// Right after every doubling, and every so often between them.
		if len(tab.slots) != slotsBefore || step%(17+capacity/16) == 0 || len(data) < 3 {
			checkTableModel(t, step, tab, m)
		}
	}
	// A complete flush with nothing arriving leaves nothing pending.
	for range 2 {
		for {
			recs, done := tab.drain(50)
			for _, r := range recs {
				m.drained[r.Addr] += r.Packets
			}
			if done {
				break
			}
		}
	}
	checkTableModel(t, -1, tab, m)
	for _, a := range m.recent {
		if r, _ := tab.get(a); r.Packets != 0 {
			t.Fatalf("after a complete flush %v still has %d packets pending", a, r.Packets)
		}
	}
	if len(tab.pendingEvicted) != 0 {
		t.Fatalf("after a complete flush %d evicted records wait", len(tab.pendingEvicted))
	}
}

func checkTableModel(t *testing.T, step int, tab *table, m *tableModel) {
	t.Helper()
	if got := lruOrder(t, tab); !slices.Equal(got, m.recent) {
		t.Fatalf("step %d: recency order %v, model %v", step, got, m.recent)
	}
	n := 0
	for _, s := range tab.index {
		if s >= 0 {
			n++
		}
	}
	if n != len(m.recent) {
		t.Fatalf("step %d: %d index entries for %d sources", step, n, len(m.recent))
	}
	live := map[netip.Addr]uint64{}
	for _, a := range m.recent {
		r, ok := tab.get(a)
		if !ok {
			t.Fatalf("step %d: %v kept by the model, not found", step, a)
		}
		if !r.FirstSeen.Equal(m.first[a]) || !r.LastSeen.Equal(m.last[a]) {
			t.Fatalf("step %d: %v seen %v..%v, model %v..%v", step, a, r.FirstSeen, r.LastSeen, m.first[a], m.last[a])
		}
		live[a] = r.Packets
	}
	waiting := map[netip.Addr]uint64{}
	for _, r := range tab.pendingEvicted {
		waiting[r.Addr] += r.Packets
	}
	if tab.evictedUnsaved != 0 {
		t.Fatalf("step %d: %d evicted sources lost packets (the run stays under maxEvictedPending)", step, tab.evictedUnsaved)
	}
	for a, obs := range m.observed {
		if got := m.drained[a] + live[a] + waiting[a]; got != obs {
			t.Fatalf("step %d: %v: %d packets observed, %d drained + %d pending + %d evicted waiting", step, a, obs, m.drained[a], live[a], waiting[a])
		}
	}
}

// TestTableGrowthAgainstModel interleaves packets, flushes and failed
// saves across every doubling, on the real initial size and on tiny ones.
func TestTableGrowthAgainstModel(t *testing.T) {
	for _, c := range []struct{ capacity, initial, ops int }{
		{5, 1, 2000}, {37, 2, 5000}, {300, 4, 20_000}, {2500, initialSlots, 20_000},
	} {
		rng := rand.New(rand.NewPCG(uint64(c.capacity), 7))
		data := make([]byte, 3*c.ops)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		runTableModel(t, c.capacity, c.initial, data)
	}
}

func FuzzTableGrowth(f *testing.F) {
	f.Add(uint16(5), uint8(1), []byte{0, 0, 1, 0, 0, 2, 200, 0, 3, 0, 0, 4, 255, 0, 9, 0, 0, 5, 0, 0, 6})
	f.Add(uint16(40), uint8(3), []byte("a packet, a drain, a failed save: \x00\x01\x02\xc8\x00\x07\xff\x00\x01"))
	f.Fuzz(func(t *testing.T, capacity uint16, initial uint8, data []byte) {
		runTableModel(t, 1+int(capacity)%3000, 1+int(initial)%16, data)
	})
}
