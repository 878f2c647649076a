package failmem

import (
	"math/bits"
)

// addrKey is an address as the table stores it: 4 bytes for IPv4, 16 for
// IPv6, so an IPv4 slot is 44 bytes and an IPv6 slot 56.
type addrKey interface{ [4]byte | [16]byte }

type slot[K addrKey] struct {
	key K // the zero key marks an empty slot (the unspecified address is never tracked)
	rec record
}

// maxLoadNum/maxLoadDen is the fill at which a table grows (or, at its
// largest, evicts): linear probing stays short at 7/8 with a seeded hash,
// and an address then costs 44 / (7/8) ≈ 50 bytes (IPv4), 56 / (7/8) = 64
// (IPv6). A higher load was measured instead: at 15/16 (IPv6 60 B/address)
// a lookup that misses took 1.4-1.7× as long at a million addresses, and a
// new source's Observe (miss, evict, insert) 1.25-1.45× (BenchmarkLookupMiss1M,
// BenchmarkObserveNew1M, same run, medians of 10): a miss probes
// (1+1/(1-a)^2)/2 slots, 32 at 7/8 and 128 at 15/16. Robin Hood probing
// would shorten the misses, not the hits; the 64 bytes came from the record.
const maxLoadNum, maxLoadDen = 7, 8

// table is an open-addressing hash table with linear probing and
// backward-shift deletion (no tombstones). Its size need not be a power of
// two: the home slot is the hash scaled to the length, so the last growth
// step can stop exactly at the size max_addresses needs.
type table[K addrKey] struct {
	slots   []slot[K]
	mapped  bool // slots live outside the Go heap (allocSlots)
	n       int
	maxLen  int // the most slots it may grow to
	maxKeys int // the most keys at maxLen (full); 0: 7/8 of it
	sweep   int // sweepAuth's cursor
	hash    func(*K, uint64) uint64
	seed    uint64
}

func (t *table[K]) home(k *K) int {
	hi, _ := bits.Mul64(t.hash(k, t.seed), uint64(len(t.slots)))
	return int(hi)
}

// find returns the slot index of k, or -1.
func (t *table[K]) find(k *K) int {
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

// full reports whether one more key would exceed the load at the largest size.
func (t *table[K]) full() bool {
	if t.maxKeys > 0 {
		return len(t.slots) >= t.maxLen && t.n >= t.maxKeys
	}
	return len(t.slots) >= t.maxLen && (t.n+1)*maxLoadDen > len(t.slots)*maxLoadNum
}

// insert adds k (not present) with a zero record and returns its index;
// the caller has made room (full() is false).
func (t *table[K]) insert(k *K) int {
	if (t.n+1)*maxLoadDen > len(t.slots)*maxLoadNum {
		t.grow()
	}
	var zero K
	i := t.home(k)
	for t.slots[i].key != zero {
		if i++; i == len(t.slots) {
			i = 0
		}
	}
	t.slots[i] = slot[K]{key: *k}
	t.n++
	return i
}

func (t *table[K]) grow() {
	n := max(2*len(t.slots), 1024)
	if n > t.maxLen {
		n = t.maxLen
	}
	if n <= len(t.slots) {
		return
	}
	old, oldMapped := t.slots, t.mapped
	t.slots, t.mapped = allocSlots[K](n)
	defer freeSlots(old, oldMapped)
	var zero K
	for i := range old {
		if old[i].key == zero {
			continue
		}
		j := t.home(&old[i].key)
		for t.slots[j].key != zero {
			if j++; j == n {
				j = 0
			}
		}
		t.slots[j] = old[i]
	}
}

// remove deletes the slot at i and shifts back the entries after it that
// probed past it, so lookups never need tombstones.
func (t *table[K]) remove(i int) {
	var zero K
	n := len(t.slots)
	j := i
	for {
		if j++; j == n {
			j = 0
		}
		if t.slots[j].key == zero {
			break
		}
		h := t.home(&t.slots[j].key)
		// The entry at j may move to i if its home is not in (i, j].
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = slot[K]{}
	t.n--
}

func (t *table[K]) bytes() int {
	var s slot[K]
	return len(t.slots) * int(sizeofSlot(&s))
}

func hash4(k *[4]byte, seed uint64) uint64 {
	x := uint64(k[0])<<24 | uint64(k[1])<<16 | uint64(k[2])<<8 | uint64(k[3])
	return mix(x ^ seed)
}

func hash16(k *[16]byte, seed uint64) uint64 {
	var a, b uint64
	for i := 0; i < 8; i++ {
		a = a<<8 | uint64(k[i])
		b = b<<8 | uint64(k[8+i])
	}
	return mix(mix(a^seed) ^ b)
}

// mix is murmur3's 64-bit finalizer.
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
