package failmem

import (
	"testing"
)

// maxBytesPerAddr is issue 11's goal for a tracked address.
const maxBytesPerAddr = 64

// fillTable inserts n keys as the memory does (growing as it needs) and
// fails if the table calls itself full before they all fit.
func fillTable[K addrKey](t *testing.T, tb *table[K], n int, key func(int) K) {
	t.Helper()
	for i := range n {
		if tb.full() {
			t.Fatalf("full at %d keys, want room for %d", tb.n, n)
		}
		k := key(i)
		tb.insert(&k)
	}
}

// At the default capacity (1,048,576 addresses), a tracked address costs
// at most 64 bytes of table, IPv4 and IPv6 alike, from the table's own
// sizes once it holds them all (the slots live off the Go heap; the rest of
// the memory is a few hundred bytes and the bounded challenge queue).
func TestBytesPerAddressAtDefaultCapacity(t *testing.T) {
	m := mustNew(t, nil)
	n := m.o.MaxAddrs
	if n != 1<<20 {
		t.Fatalf("default capacity %d, want 1,048,576", n)
	}
	fillTable(t, m.v4, n, func(i int) [4]byte { return benchAddr("ipv4", i).As4() })
	fillTable(t, m.v6, n, func(i int) [16]byte { return benchAddr("ipv6", i).As16() })
	for _, c := range []struct {
		name       string
		bytes, n   int
		slots      int
		full       bool
		wantPerMax float64
	}{
		{"IPv4", m.v4.bytes(), m.v4.n, len(m.v4.slots), m.v4.full(), 51},
		{"IPv6", m.v6.bytes(), m.v6.n, len(m.v6.slots), m.v6.full(), maxBytesPerAddr},
	} {
		per := float64(c.bytes) / float64(c.n)
		t.Logf("%s: %d addresses in %d slots (load %.4f): %d bytes, %.3f B/address", c.name, c.n, c.slots, float64(c.n)/float64(c.slots), c.bytes, per)
		if c.n != n {
			t.Errorf("%s: %d addresses held, want %d", c.name, c.n, n)
		}
		if per > c.wantPerMax {
			t.Errorf("%s: %.3f bytes per address, want at most %v", c.name, per, c.wantPerMax)
		}
		// The load stays at 7/8 (one slot more at most): probing stays short.
		if c.n*maxLoadDen > (c.slots+1)*maxLoadNum {
			t.Errorf("%s: load %d/%d above 7/8", c.name, c.n, c.slots)
		}
		if !c.full {
			t.Errorf("%s: not full at the capacity: the next address must evict", c.name)
		}
	}
	if st := m.Stats(); st.Bytes != m.v4.bytes()+m.v6.bytes() || st.Tracked != 2*n {
		t.Errorf("stats %+v disagree with the tables", st)
	}
}
