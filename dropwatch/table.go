package dropwatch

import (
	"hash/maphash"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/sipsentry/sipsentry/dropwatch/packet"
	"github.com/sipsentry/sipsentry/dropwatch/sip"
	"github.com/sipsentry/sipsentry/state"
)

// slot is one source's aggregate: 48 bytes, plus 8-11 bytes of index per
// slot (a power-of-two table at least twice the capacity), inside the
// engine's failure-memory budget of 64 bytes per address (issue 9/11).
type slot struct {
	addr        [16]byte // IPv4 as ::ffff:a.b.c.d
	first, last uint32   // seconds since the table's epoch
	pending     uint32   // packets since the last flush (saturating)
	prev, next  int32    // LRU list, most recent at head; -1 ends it
	port        uint16   // destination port of the last packet
	ua          uint16   // index into table.uas, 0 = none
	country     [2]byte
	methods     uint16 // bits over state.DroppedMethods
	reasons     uint8  // bits over state.DroppedReasons
	protos      uint8  // bits over state.DroppedProtos
	push        uint8  // sip.PushParams (same order as state.DroppedPushParams)
	dirty       bool   // changed since the last flush
}

// maxUAs bounds the interned User-Agent strings (each at most
// sip.MaxUserAgent bytes, so at most ~600 KB); a scanner fleet rarely
// shows more than a few dozen distinct ones.
const maxUAs = 4096

// maxEvictedPending bounds the records of evicted sources waiting for the
// next flush; beyond it an eviction loses its unsaved packets (counted).
const maxEvictedPending = 8192

// initialSlots is where a table starts: most hosts never see more than a
// few hundred dropped sources, so the full capacity (100,000 slots, ~6 MB
// with the index) is paid only by a host that is flooded.
const initialSlots = 1024

// table is a bounded map from address to aggregate with
// least-recently-seen eviction. Open addressing with linear probing and
// backward-shift deletion over a seeded hash (attackers choose the source
// addresses, so the hash must not be predictable). It starts at
// initialSlots and doubles (slots and index) as sources arrive, up to
// capacity; only then does it evict. Not safe for concurrent use:
// Watcher.tableMu guards it.
type table struct {
	slots      []slot  // len grows by doubling up to capacity
	capacity   int32   // most slots the table ever holds
	used       int32   // slots ever used (they fill in order, then recycle)
	index      []int32 // slot number or -1; at least twice len(slots)
	mask       uint64
	seed       maphash.Seed
	head, tail int32
	epoch      time.Time

	uas   []string // [0] = ""
	uaIdx map[string]uint16

	cursor         int32  // where the next drain chunk starts
	inserted       uint64 // sources ever inserted (each may become a DB row)
	evicted        uint64 // sources evicted to make room
	evictedUnsaved uint64 // of them, with packets lost before a flush
	uaOverflow     uint64 // User-Agents not kept (maxUAs reached)
	pendingEvicted []state.DroppedSource
}

func newTable(capacity int, epoch time.Time) *table {
	return newTableSized(capacity, initialSlots, epoch)
}

// newTableSized starts with min(initial, capacity) slots (initial =
// capacity allocates everything up front, as the table did before it grew).
func newTableSized(capacity, initial int, epoch time.Time) *table {
	capacity = min(max(capacity, 1), math.MaxInt32)
	n := min(max(initial, 1), capacity)
	t := &table{slots: make([]slot, n), capacity: int32(capacity),
		seed: maphash.MakeSeed(), head: -1, tail: -1, epoch: epoch,
		uas: []string{""}, uaIdx: map[string]uint16{}}
	t.index = newIndex(n)
	t.mask = uint64(len(t.index) - 1)
	return t
}

// newIndex is an empty index for n slots: a power of two at least 2n, so
// the load stays at or under one half and probe runs stay short.
func newIndex(n int) []int32 {
	size := 1
	for size < 2*n {
		size <<= 1
	}
	index := make([]int32, size)
	for i := range index {
		index[i] = -1
	}
	return index
}

// grow doubles the slots (at most to capacity) and rebuilds the index for
// them. Slot numbers do not change, so the LRU links and the drain cursor
// stay valid; each source is rehashed under the same seed. The cost,
// amortised over the inserts that filled the table, is O(1) per source;
// the last doubling of a 100,000-slot table holds the lock ~5 ms, once
// (BenchmarkTableLastDoubling).
func (t *table) grow() {
	n := int(min(2*int64(len(t.slots)), int64(t.capacity)))
	slots := make([]slot, n)
	copy(slots, t.slots[:t.used])
	t.slots = slots
	t.index = newIndex(n)
	t.mask = uint64(len(t.index) - 1)
	for s := int32(0); s < t.used; s++ {
		_, pos := t.find(t.slots[s].addr)
		t.index[pos] = s
	}
}

func key(a netip.Addr) [16]byte { return a.Unmap().As16() }

func (t *table) home(k [16]byte) uint64 { return maphash.Comparable(t.seed, k) & t.mask }

// find returns the slot of k or -1, and the index position where k is or
// would go.
func (t *table) find(k [16]byte) (int32, uint64) {
	i := t.home(k)
	for {
		s := t.index[i]
		if s < 0 || t.slots[s].addr == k {
			return s, i
		}
		i = (i + 1) & t.mask
	}
}

func (t *table) unlink(s int32) {
	sl := &t.slots[s]
	if sl.prev >= 0 {
		t.slots[sl.prev].next = sl.next
	} else {
		t.head = sl.next
	}
	if sl.next >= 0 {
		t.slots[sl.next].prev = sl.prev
	} else {
		t.tail = sl.prev
	}
}

func (t *table) pushFront(s int32) {
	sl := &t.slots[s]
	sl.prev, sl.next = -1, t.head
	if t.head >= 0 {
		t.slots[t.head].prev = s
	}
	t.head = s
	if t.tail < 0 {
		t.tail = s
	}
}

// removeAt deletes index position i by shifting back the entries of its
// probe run, so no tombstone ever slows a lookup.
func (t *table) removeAt(i uint64) {
	j := i
	for {
		j = (j + 1) & t.mask
		s := t.index[j]
		if s < 0 {
			break
		}
		k := t.home(t.slots[s].addr)
		// The entry at j may move to i only if its home is not in (i, j].
		if (i < j && i < k && k <= j) || (i > j && (i < k || k <= j)) {
			continue
		}
		t.index[i] = s
		i = j
	}
	t.index[i] = -1
}

func (t *table) secs(at time.Time) uint32 {
	d := at.Sub(t.epoch)
	if d < 0 {
		return 0
	}
	return uint32(min(d/time.Second, 1<<32-1))
}

func (t *table) time(s uint32) time.Time { return t.epoch.Add(time.Duration(s) * time.Second) }

// observe adds one packet; country is asked only for a new source.
// It returns the source's country code (zero if unknown).
func (t *table) observe(src netip.Addr, at time.Time, reason string, p *packet.Packet, req *sip.Request, country func(netip.Addr) string) [2]byte {
	k := key(src)
	s, pos := t.find(k)
	if s < 0 {
		t.inserted++
		s = t.alloc()
		_, pos = t.find(k) // eviction may have shifted the run
		t.index[pos] = s
		sl := &t.slots[s]
		*sl = slot{addr: k, first: t.secs(at)}
		if country != nil {
			if cc := country(src); len(cc) == 2 {
				sl.country = [2]byte{cc[0], cc[1]}
			}
		}
		t.pushFront(s)
	} else if t.head != s {
		t.unlink(s)
		t.pushFront(s)
	}
	sl := &t.slots[s]
	sl.last = t.secs(at)
	if sl.pending < 1<<32-1 {
		sl.pending++
	}
	sl.dirty = true
	sl.port = p.DstPort
	sl.reasons |= 1 << vocabIndex(state.DroppedReasons, reason)
	sl.protos |= 1 << vocabIndex(state.DroppedProtos, packet.ProtoName(p.Proto))
	if req != nil {
		sl.methods |= 1 << vocabIndex(state.DroppedMethods, req.Method)
		sl.push |= uint8(req.Push)
		if req.UserAgent != "" {
			sl.ua = t.intern(req.UserAgent)
		}
	}
	return sl.country
}

// vocabIndex is n's bit in vocab, or the last ("other").
func vocabIndex(vocab []string, n string) int {
	if i := slices.Index(vocab, n); i >= 0 {
		return i
	}
	return len(vocab) - 1
}

func (t *table) intern(ua string) uint16 {
	if i, ok := t.uaIdx[ua]; ok {
		return i
	}
	if len(t.uas) >= maxUAs {
		t.uaOverflow++
		return 0
	}
	i := uint16(len(t.uas))
	t.uas = append(t.uas, ua)
	t.uaIdx[ua] = i
	return i
}

// alloc returns a free slot, growing the table while it is under its
// capacity and evicting the least recently seen source once it is full.
func (t *table) alloc() int32 {
	if int(t.used) == len(t.slots) && int32(len(t.slots)) < t.capacity {
		t.grow()
	}
	if int(t.used) < len(t.slots) {
		t.used++
		return t.used - 1
	}
	s := t.tail
	sl := &t.slots[s]
	t.evicted++
	if sl.dirty {
		if len(t.pendingEvicted) < maxEvictedPending {
			t.pendingEvicted = append(t.pendingEvicted, t.record(s))
		} else {
			t.evictedUnsaved++
		}
	}
	_, pos := t.find(sl.addr)
	t.removeAt(pos)
	t.unlink(s)
	return s
}

// record is slot s as a state delta (pending packets, sets, last values).
func (t *table) record(s int32) state.DroppedSource {
	sl := &t.slots[s]
	r := state.DroppedSource{
		Addr:      netip.AddrFrom16(sl.addr).Unmap(),
		FirstSeen: t.time(sl.first), LastSeen: t.time(sl.last),
		Packets: uint64(sl.pending), LastPort: sl.port,
		Reasons: bitNames(uint64(sl.reasons), state.DroppedReasons), Protos: bitNames(uint64(sl.protos), state.DroppedProtos),
		Methods: bitNames(uint64(sl.methods), state.DroppedMethods), PushParams: bitNames(uint64(sl.push), state.DroppedPushParams),
		UserAgent: t.uas[sl.ua],
	}
	if sl.country != [2]byte{} {
		r.Country = string(sl.country[:])
	}
	return r
}

func bitNames(m uint64, vocab []string) []string {
	var out []string
	for i, n := range vocab {
		if m&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// drain returns up to limit changed sources as deltas (evicted ones
// first) and marks them saved; done is true when none is left. Flushing in
// chunks bounds the records alive at once (each ~250 bytes) however many
// sources changed since the last flush.
func (t *table) drain(limit int) (out []state.DroppedSource, done bool) {
	n := min(limit, len(t.pendingEvicted))
	out = append(out, t.pendingEvicted[:n]...)
	t.pendingEvicted = t.pendingEvicted[n:]
	if len(t.pendingEvicted) == 0 {
		t.pendingEvicted = nil
	}
	for ; t.cursor < t.used && len(out) < limit; t.cursor++ {
		if sl := &t.slots[t.cursor]; sl.dirty {
			out = append(out, t.record(t.cursor))
			sl.dirty = false
			sl.pending = 0
		}
	}
	if t.cursor < t.used || len(t.pendingEvicted) > 0 {
		return out, false
	}
	t.cursor = 0
	if len(t.uas) > maxUAs*3/4 {
		t.reintern()
	}
	return out, true
}

// requeue keeps records a failed save returned for the next drain, within
// maxEvictedPending; the others are counted as unsaved.
func (t *table) requeue(recs []state.DroppedSource) {
	room := max(0, maxEvictedPending-len(t.pendingEvicted))
	n := min(room, len(recs))
	t.pendingEvicted = append(t.pendingEvicted, recs[:n]...)
	t.evictedUnsaved += uint64(len(recs) - n)
}

// reintern keeps only the User-Agents live sources still refer to.
func (t *table) reintern() {
	old := t.uas
	t.uas, t.uaIdx = []string{""}, map[string]uint16{}
	for s := int32(0); s < t.used; s++ {
		if ua := t.slots[s].ua; ua != 0 {
			t.slots[s].ua = t.intern(old[ua])
		}
	}
}

// get returns the aggregate of a as a record (Packets: unsaved ones).
func (t *table) get(a netip.Addr) (state.DroppedSource, bool) {
	s, _ := t.find(key(a))
	if s < 0 {
		return state.DroppedSource{}, false
	}
	return t.record(s), true
}

func (t *table) len() int { return int(t.used) }
