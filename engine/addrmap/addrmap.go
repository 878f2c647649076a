// Package addrmap is a map from IP address to a small pointer-free value,
// kept outside the Go heap: the engine's ban book, which holds one entry
// per banned address (a million under a flood).
//
// Why not a Go map: map[[16]byte]V costs ~75–90 bytes an entry at 24-byte
// values (16-byte keys even for IPv4, swiss-table growth), and as live heap
// it raises the GC's target by as much again. Here an IPv4 entry costs its
// 4-byte key, an IPv6 entry 16, and the tables grow by half (load 7/12 to
// 7/8), in memory the GC neither scans nor counts.
//
// It never holds a pointer (New panics on a value type that has one: the
// GC could not see it) and is not safe for concurrent use.
package addrmap

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"runtime"
	"unsafe"
)

// Map maps addresses (IPv4-mapped IPv6 taken as IPv4) to V. The zero
// addresses (0.0.0.0 and ::) cannot be keys: they mark empty slots.
type Map[V any] struct {
	v4 *table[[4]byte, V]
	v6 *table[[16]byte, V]
}

// New returns an empty map. V must not contain pointers.
func New[V any]() *Map[V] {
	if t := reflect.TypeFor[V](); hasPointers(t) {
		panic(fmt.Sprintf("addrmap: value type %v holds pointers", t))
	}
	seed := rand.Uint64() // the addresses are the attacker's choice: a secret seed
	m := &Map[V]{v4: &table[[4]byte, V]{hash: hash4, seed: seed}, v6: &table[[16]byte, V]{hash: hash16, seed: seed ^ 0x9e3779b97f4a7c15}}
	runtime.AddCleanup(m, func(t *table[[4]byte, V]) { t.release() }, m.v4)
	runtime.AddCleanup(m, func(t *table[[16]byte, V]) { t.release() }, m.v6)
	return m
}

func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	}
	return true
}

// Len returns the number of entries.
func (m *Map[V]) Len() int { return m.v4.n + m.v6.n }

// Bytes returns the memory the tables take (for the memory figures).
func (m *Map[V]) Bytes() int { return m.v4.bytes() + m.v6.bytes() }

// Get returns a's value and whether it is present.
func (m *Map[V]) Get(a netip.Addr) (V, bool) {
	a = a.Unmap()
	if a.Is4() {
		k := a.As4()
		return m.v4.get(&k)
	}
	k := a.As16()
	return m.v6.get(&k)
}

// Set stores v for a. It panics on the zero address.
func (m *Map[V]) Set(a netip.Addr, v V) {
	a = a.Unmap()
	if a.Is4() {
		k := a.As4()
		m.v4.set(&k, v)
		return
	}
	k := a.As16()
	m.v6.set(&k, v)
}

// Delete removes a; absent is fine.
func (m *Map[V]) Delete(a netip.Addr) {
	a = a.Unmap()
	if a.Is4() {
		k := a.As4()
		m.v4.del(&k)
		return
	}
	k := a.As16()
	m.v6.del(&k)
}

// All yields every entry, in no particular order. The map must not change
// during the iteration (use Update for that).
func (m *Map[V]) All() iter.Seq2[netip.Addr, V] {
	return func(yield func(netip.Addr, V) bool) {
		for i := range m.v4.slots {
			if s := &m.v4.slots[i]; s.key != [4]byte{} && !yield(netip.AddrFrom4(s.key), s.val) {
				return
			}
		}
		for i := range m.v6.slots {
			if s := &m.v6.slots[i]; s.key != [16]byte{} && !yield(netip.AddrFrom16(s.key), s.val) {
				return
			}
		}
	}
}

// Update calls f for every entry with a pointer to its value, which f may
// change; the entry is deleted when f returns true. Every entry is seen
// exactly once.
func (m *Map[V]) Update(f func(a netip.Addr, v *V) (remove bool)) {
	m.v4.update(func(k *[4]byte, v *V) bool { return f(netip.AddrFrom4(*k), v) })
	m.v6.update(func(k *[16]byte, v *V) bool { return f(netip.AddrFrom16(*k), v) })
}

type slot[K [4]byte | [16]byte, V any] struct {
	key K // zero: empty
	val V
}

// Load bounds: a table grows by half once 7/8 full, so it is 7/12 to 7/8
// full; linear probing stays short below 7/8 with a seeded hash (the
// addresses are the attacker's choice).
const (
	maxLoadNum, maxLoadDen = 7, 8
	minSlots               = 64
)

// table is open addressing with linear probing and backward-shift
// deletion (no tombstones). Its length need not be a power of two: the
// home slot is the hash scaled to the length.
type table[K [4]byte | [16]byte, V any] struct {
	slots  []slot[K, V]
	mapped bool // slots live outside the Go heap
	n      int
	hash   func(*K, uint64) uint64
	seed   uint64
}

func (t *table[K, V]) home(k *K) int {
	hi, _ := bits.Mul64(t.hash(k, t.seed), uint64(len(t.slots)))
	return int(hi)
}

func hash4(k *[4]byte, seed uint64) uint64 {
	return mix(uint64(binary.BigEndian.Uint32(k[:])) ^ seed)
}

func hash16(k *[16]byte, seed uint64) uint64 {
	return mix(mix(binary.BigEndian.Uint64(k[:8])^seed) ^ binary.BigEndian.Uint64(k[8:]))
}

// mix is murmur3's 64-bit finalizer: every input bit reaches every output
// bit, so a seed the attacker cannot see spreads any choice of addresses.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

func (t *table[K, V]) find(k *K) int {
	if len(t.slots) == 0 {
		return -1
	}
	var zero K
	i := t.home(k)
	for {
		s := &t.slots[i]
		if s.key == *k {
			return i
		}
		if s.key == zero {
			return -1
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

func (t *table[K, V]) get(k *K) (V, bool) {
	if i := t.find(k); i >= 0 {
		return t.slots[i].val, true
	}
	var zero V
	return zero, false
}

func (t *table[K, V]) set(k *K, v V) {
	var zero K
	if *k == zero {
		panic("addrmap: the zero address cannot be a key")
	}
	if i := t.find(k); i >= 0 {
		t.slots[i].val = v
		return
	}
	if (t.n+1)*maxLoadDen > len(t.slots)*maxLoadNum {
		t.grow()
	}
	t.insert(k, v)
	t.n++
}

// insert puts k (known absent) into its first free slot.
func (t *table[K, V]) insert(k *K, v V) {
	var zero K
	i := t.home(k)
	for t.slots[i].key != zero {
		if i++; i == len(t.slots) {
			i = 0
		}
	}
	t.slots[i] = slot[K, V]{key: *k, val: v}
}

func (t *table[K, V]) grow() {
	old, oldMapped := t.slots, t.mapped
	n := max(minSlots, len(old)+len(old)/2)
	t.slots, t.mapped = allocSlots[K, V](n)
	var zero K
	for i := range old {
		if s := &old[i]; s.key != zero {
			t.insert(&s.key, s.val)
		}
	}
	freeSlots(old, oldMapped)
}

func (t *table[K, V]) del(k *K) {
	if i := t.find(k); i >= 0 {
		t.removeAt(i)
	}
}

// removeAt empties slot i and shifts back the entries after it that
// probed past it, so lookups never stop early at the hole.
func (t *table[K, V]) removeAt(i int) {
	var zero K
	n := len(t.slots)
	hole := i
	for j := (i + 1) % n; t.slots[j].key != zero; j = (j + 1) % n {
		h := t.home(&t.slots[j].key)
		// j's entry may fill the hole when its home is not in (hole, j]
		// (circularly): it probed through the hole to get to j.
		if (j > hole && (h <= hole || h > j)) || (j < hole && h <= hole && h > j) {
			t.slots[hole] = t.slots[j]
			hole = j
		}
	}
	t.slots[hole] = slot[K, V]{}
	t.n--
}

// update visits every entry once. It starts after an empty slot: a
// removal's backward shift then only moves entries not yet visited, to the
// slot being visited or to slots after it, so the visit stays at a slot
// until what is there has been seen.
func (t *table[K, V]) update(f func(k *K, v *V) bool) {
	n := len(t.slots)
	if t.n == 0 {
		return
	}
	var zero K
	start := 0
	for t.slots[start].key != zero { // the load is below 1: there is a hole
		start++
	}
	for step := 0; step < n; step++ {
		i := (start + 1 + step) % n
		for t.slots[i].key != zero {
			if !f(&t.slots[i].key, &t.slots[i].val) {
				break
			}
			t.removeAt(i) // what moves here is unseen: look again
		}
	}
}

func (t *table[K, V]) bytes() int {
	var s slot[K, V]
	return len(t.slots) * int(unsafe.Sizeof(s))
}

func (t *table[K, V]) release() {
	freeSlots(t.slots, t.mapped)
	t.slots = nil
}
