package failmem

import (
	"net/netip"
	"testing"
	"time"
)

// The lookup benchmarks use only the public API, so the same file runs
// against an older failmem for a same-run baseline.

// benchAddr is the i-th test source of a family (10/8, 2001:db8::/96).
func benchAddr(fam string, i int) netip.Addr {
	if fam == "ipv4" {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
}

// filled1M is a memory holding DefaultOptions().MaxAddrs sources of fam,
// one failure each: the table at its fullest.
func filled1M(b *testing.B, fam string) (*Memory, int) {
	b.Helper()
	m := mustNew(b, nil)
	n := DefaultOptions().MaxAddrs
	for i := range n {
		m.Observe(benchAddr(fam, i), Observation{Time: t0, Kind: Failure, Transport: UDP})
	}
	if st := m.Stats(); st.Tracked != n || st.Evicted != 0 {
		b.Fatalf("stats %+v: want %d tracked, none evicted", st, n)
	}
	return m, n
}

// BenchmarkLookupHit1M: Known on tracked addresses (a lookup that finds).
func BenchmarkLookupHit1M(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		b.Run(fam, func(b *testing.B) {
			m, n := filled1M(b, fam)
			at := t0.Add(time.Second)
			i := 0
			for b.Loop() {
				m.Known(benchAddr(fam, i%n), at)
				i += 7919 // a prime: a different part of the table each time
			}
		})
	}
}

// BenchmarkLookupMiss1M: Known on addresses not tracked (a lookup that
// probes to an empty slot, what every new source of a flood costs first).
func BenchmarkLookupMiss1M(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		b.Run(fam, func(b *testing.B) {
			m, n := filled1M(b, fam)
			at := t0.Add(time.Second)
			i := 0
			for b.Loop() {
				m.Known(benchAddr(fam, n+i%(1<<22)), at)
				i += 7919
			}
		})
	}
}

// BenchmarkObserveNew1M: a failure from a new source on a full memory: a
// miss, an eviction (a sample of 32 records) and an insert.
func BenchmarkObserveNew1M(b *testing.B) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		b.Run(fam, func(b *testing.B) {
			m, n := filled1M(b, fam)
			o := Observation{Time: t0.Add(time.Minute), Kind: Failure, Transport: UDP}
			i := 0
			for b.Loop() {
				m.Observe(benchAddr(fam, n+i), o)
				i++
			}
		})
	}
}
