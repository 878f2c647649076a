package dropwatch

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/dropwatch/packet"
	"github.com/sipsentry/sipsentry/dropwatch/sip"
)

// BenchmarkTableObserve is the per-packet table path at the default
// capacity (100,000), for a table that grows (newTable) and one allocated
// whole at start (as before issue 11), in the same run:
//   - hit: a packet from one of 50,000 known sources (steady size);
//   - evict: a packet from a new source into a full table (steady size);
//   - fill: new sources from an empty table to its capacity, table
//     construction and every doubling included.
func BenchmarkTableObserve(b *testing.B) {
	const capacity = 100_000
	for _, kind := range []struct {
		name string
		mk   func(time.Time) *table
	}{
		{"grown", func(t0 time.Time) *table { return newTable(capacity, t0) }},
		{"whole", func(t0 time.Time) *table { return newTableSized(capacity, capacity, t0) }},
	} {
		udp := &packet.Packet{Proto: packet.ProtoUDP, DstPort: 5060}
		req := &sip.Request{Method: "REGISTER", UserAgent: "friendly-scanner"}
		t0 := time.Now()
		b.Run("hit/"+kind.name, func(b *testing.B) {
			tab := kind.mk(t0)
			addrs := make([]netip.Addr, 50_000)
			for i := range addrs {
				addrs[i] = testAddr(i)
				tab.observe(addrs[i], t0, "geo", udp, req, nil)
			}
			rand.New(rand.NewPCG(1, 1)).Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tab.observe(addrs[i%len(addrs)], t0, "geo", udp, req, nil)
			}
		})
		b.Run("evict/"+kind.name, func(b *testing.B) {
			tab := kind.mk(t0)
			for i := range capacity {
				tab.observe(testAddr(i), t0, "geo", udp, req, nil)
			}
			tab.drain(capacity) // evictions then record nothing (clean slots)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				tab.observe(testAddr(capacity+i), t0, "geo", udp, req, nil)
				if len(tab.pendingEvicted) >= maxEvictedPending {
					tab.pendingEvicted = tab.pendingEvicted[:0]
				}
			}
		})
		b.Run("fill/"+kind.name, func(b *testing.B) {
			var tab *table
			for i := 0; i < b.N; i++ {
				if i%capacity == 0 {
					tab = kind.mk(t0)
				}
				tab.observe(testAddr(i%capacity), t0, "geo", udp, req, nil)
			}
		})
	}
}

// BenchmarkTableLastDoubling times the one packet that makes a table of
// 65,536 sources grow to its 100,000 slots: the longest the table's lock
// is held by a growth (the Watcher's NFLOG reader waits that long once).
func BenchmarkTableLastDoubling(b *testing.B) {
	udp := &packet.Packet{Proto: packet.ProtoUDP, DstPort: 5060}
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		tab := newTable(100_000, t0)
		for j := range 65_536 {
			tab.observe(testAddr(j), t0, "geo", udp, nil, nil)
		}
		b.StartTimer()
		tab.observe(testAddr(65_536), t0, "geo", udp, nil, nil)
		if len(tab.slots) != 100_000 {
			b.Fatalf("%d slots after the last doubling", len(tab.slots))
		}
	}
}
