package engine

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"

	"github.com/sipsentry/sipsentry/engine/addrmap"
)

// addrKey must give back the address it was made from, and a v4-mapped
// address must share its v4 form's key (engine inputs are unmapped).
func TestAddrKeyRoundTrip(t *testing.T) {
	for _, s := range []string{"203.0.113.7", "198.51.100.255", "2001:db8::1", "2001:db8:ffff::ffff", "::", "0.0.0.0"} {
		a := netip.MustParseAddr(s)
		if got := keyOf(a).addr(); got != a {
			t.Errorf("%s: round trip gives %s", a, got)
		}
	}
	v4, mapped := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("::ffff:203.0.113.7")
	if keyOf(v4) != keyOf(mapped) || keyOf(mapped).addr() != v4 {
		t.Errorf("v4-mapped key %v, v4 key %v", keyOf(mapped), keyOf(v4))
	}
	if keyOf(v4) == keyOf(netip.MustParseAddr("203.0.113.8")) {
		t.Error("distinct addresses share a key")
	}
}

// heapOf reports what build leaves live on the heap (HeapInuse after GC).
func heapOf[M any](build func() M) (M, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := build()
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return m, after.HeapInuse - min(after.HeapInuse, before.HeapInuse)
}

// BenchmarkBanMapMemory: memory per ban of the engine's ban book with
// 100k and 1M bans (random global v4 sources, and v6 ones), against the
// previous layout (a Go map[addrKey]banInfo on the heap) built in the same
// run. The book's tables live outside the heap (addrmap): counted from
// their own size plus what building them left on the heap.
func BenchmarkBanMapMemory(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		for _, fam := range []string{"v4", "v6"} {
			b.Run(fmt.Sprintf("%s-%d", fam, n), func(b *testing.B) {
				rng := rand.New(rand.NewPCG(11, 12))
				addrs := make([]netip.Addr, n)
				seen := make(map[netip.Addr]bool, n)
				for i := 0; i < n; {
					if fam == "v4" {
						addrs[i] = randomSource(rng)
					} else {
						var k [16]byte
						k[0], k[1], k[2], k[3] = 0x20, 0x01, 0x0d, 0xb8
						binary.BigEndian.PutUint64(k[8:], rng.Uint64()|1)
						addrs[i] = netip.AddrFrom16(k)
					}
					if !seen[addrs[i]] { // n distinct
						seen[addrs[i]] = true
						i++
					}
				}
				seen = nil
				bi := banInfo{until: 1 << 60, offences: 3, active: true}
				var cur, old uint64
				for b.Loop() {
					e := &Engine{}
					var heap uint64
					e.bans.byAddr, heap = heapOf(func() *addrmap.Map[banInfo] {
						m := addrmap.New[banInfo]()
						for _, a := range addrs {
							m.Set(a, bi)
						}
						return m
					})
					if e.bans.byAddr.Len() != n {
						b.Fatalf("%d bans, want %d", e.bans.byAddr.Len(), n)
					}
					cur = heap + uint64(e.bans.byAddr.Bytes())
					runtime.KeepAlive(e.bans.byAddr)
					e.bans.byAddr = nil
					var om map[addrKey]banInfo
					om, old = heapOf(func() map[addrKey]banInfo {
						m := map[addrKey]banInfo{}
						for _, a := range addrs {
							m[keyOf(a)] = bi
						}
						return m
					})
					if len(om) != n {
						b.Fatalf("%d old-layout bans, want %d", len(om), n)
					}
					runtime.KeepAlive(om)
				}
				b.ReportMetric(float64(cur)/float64(n), "bytes/ban")
				b.ReportMetric(float64(old)/float64(n), "gomap-bytes/ban")
				b.ReportMetric(float64(cur)/float64(old), "ratio")
			})
		}
	}
}
