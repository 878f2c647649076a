package addrmap

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"unsafe"
)

type val struct {
	until int64
	n     int32
	flag  bool
}

// randAddr draws from a small space (collisions, mapped forms) or a big one.
func randAddr(r *rand.Rand) netip.Addr {
	switch r.IntN(4) {
	case 0:
		return netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + r.IntN(200))})
	case 1:
		return netip.AddrFrom16(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + r.IntN(200))}).As16()) // ::ffff:198.51.100.x
	case 2:
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		b[15] = byte(1 + r.IntN(200))
		return netip.AddrFrom16(b)
	}
	var b [4]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	b[0] |= 1
	return netip.AddrFrom4(b)
}

// The map behaves as a Go map keyed by the unmapped address, through
// growth and backward-shift deletions, and Update sees every entry once.
func TestAgainstGoMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	m := New[val]()
	model := map[netip.Addr]val{}
	for step := range 200000 {
		a := randAddr(r)
		switch op := r.IntN(10); {
		case op < 6:
			v := val{until: int64(step), n: int32(r.IntN(100)), flag: r.IntN(2) == 0}
			m.Set(a, v)
			model[a.Unmap()] = v
		case op < 9:
			m.Delete(a)
			delete(model, a.Unmap())
		default:
			got, ok := m.Get(a)
			want, wok := model[a.Unmap()]
			if ok != wok || got != want {
				t.Fatalf("step %d: Get(%v) = %v,%v; want %v,%v", step, a, got, ok, want, wok)
			}
		}
		if step%20000 == 0 {
			// Update: bump every value, drop those with odd n; every entry once.
			seen := map[netip.Addr]int{}
			m.Update(func(a netip.Addr, v *val) bool {
				seen[a]++
				v.until++
				return v.n%2 == 1
			})
			for a, v := range model {
				if seen[a] != 1 {
					t.Fatalf("step %d: Update saw %v %d times", step, a, seen[a])
				}
				if v.n%2 == 1 {
					delete(model, a)
				} else {
					v.until++
					model[a] = v
				}
			}
		}
		if m.Len() != len(model) {
			t.Fatalf("step %d: Len %d, want %d", step, m.Len(), len(model))
		}
	}
	n := 0
	for a, v := range m.All() {
		n++
		if want, ok := model[a]; !ok || want != v {
			t.Fatalf("All: %v = %v; model has %v,%v", a, v, want, ok)
		}
	}
	if n != len(model) {
		t.Fatalf("All yielded %d, want %d", n, len(model))
	}
	for a, want := range model {
		if got, ok := m.Get(a); !ok || got != want {
			t.Fatalf("Get(%v) = %v,%v; want %v", a, got, ok, want)
		}
	}
}

// Removing every entry in one Update leaves an empty map that still works.
func TestUpdateRemovesAll(t *testing.T) {
	m := New[val]()
	for i := range 5000 {
		m.Set(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), val{n: int32(i)})
	}
	visits := 0
	m.Update(func(netip.Addr, *val) bool { visits++; return true })
	if visits != 5000 || m.Len() != 0 {
		t.Fatalf("visits %d, Len %d; want 5000, 0", visits, m.Len())
	}
	a := netip.MustParseAddr("10.0.0.1")
	m.Set(a, val{n: 7})
	if v, ok := m.Get(a); !ok || v.n != 7 {
		t.Fatalf("after emptying: Get = %v,%v", v, ok)
	}
}

func TestRefusals(t *testing.T) {
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s: no panic", name)
			}
		}()
		f()
	}
	mustPanic("pointer value", func() { New[*int]() })
	mustPanic("string value", func() { New[struct{ s string }]() })
	m := New[val]()
	mustPanic("0.0.0.0", func() { m.Set(netip.IPv4Unspecified(), val{}) })
	mustPanic("::", func() { m.Set(netip.IPv6Unspecified(), val{}) })
	if _, ok := m.Get(netip.IPv4Unspecified()); ok {
		t.Error("the zero address is found in an empty map")
	}
}

// The memory per entry (issue 11: the ban book under a flood): an IPv4
// entry of a 24-byte value is a 32-byte slot, an IPv6 one 40 bytes, at a
// load of 7/12 to 7/8; a Go map[[16]byte]V took ~75–90 bytes.
func TestBytesPerEntry(t *testing.T) {
	type banLike struct {
		until    int64
		since    uint32
		offences int32
		reason   uint16
		a, b, c  bool
	}
	if s := unsafe.Sizeof(slot[[4]byte, banLike]{}); s != 32 {
		t.Fatalf("IPv4 slot %d bytes, want 32", s)
	}
	if s := unsafe.Sizeof(slot[[16]byte, banLike]{}); s != 40 {
		t.Fatalf("IPv6 slot %d bytes, want 40", s)
	}
	for _, c := range []struct {
		name string
		addr func(i int) netip.Addr
		slot float64
	}{
		{"IPv4", func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }, 32},
		{"IPv6", func(i int) netip.Addr {
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
			b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
			return netip.AddrFrom16(b)
		}, 40},
	} {
		m := New[banLike]()
		for _, n := range []int{1000, 100000, 1000000} {
			for i := m.Len(); i < n; i++ {
				m.Set(c.addr(i+1), banLike{until: int64(i)})
			}
			per := float64(m.Bytes()) / float64(n)
			t.Logf("%s: %d entries, %.1f bytes each", c.name, n, per)
			if per > c.slot*12/7+0.5 || per < c.slot {
				t.Errorf("%s at %d: %.1f bytes an entry, want %.0f–%.1f", c.name, n, per, c.slot, c.slot*12/7)
			}
		}
	}
}

func BenchmarkSetGetIPv4(b *testing.B) {
	m := New[val]()
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := addrs[i&(len(addrs)-1)]
		m.Set(a, val{until: int64(i)})
		m.Get(a)
	}
}

func BenchmarkSetGetGoMap(b *testing.B) {
	m := map[[16]byte]val{}
	addrs := make([]netip.Addr, 1<<16)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := addrs[i&(len(addrs)-1)]
		m[a.Unmap().As16()] = val{until: int64(i)}
		_ = m[a.Unmap().As16()]
	}
}
