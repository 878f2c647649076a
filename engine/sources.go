package engine

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/state"
)

// sourceTable holds every source's aggregate (the report's rows), in LRU
// order, and what Handle hands to the writer (changed
// sources, rows of evicted ones, event-log rows).
type sourceTable struct {
	tableMu sync.Mutex // guards every field below and the srcStates they hold
	byAddr  map[addrKey]*srcState
	lruHead *srcState
	lruTail *srcState
	// dirty are sources changed since the last flush; evictedRows the last
	// state of those evicted meanwhile; eventRows the event log.
	dirty       []*srcState
	evictedRows []state.SourceUpdate
	eventRows   []state.Event
	nextSession int64
	sample      eventSampler // the event log's per-second budget under a flood
	kinds       [8]uint64
	lastEvent   time.Time

	evicted, droppedRows atomic.Uint64
}

func (t *sourceTable) init() { t.byAddr = map[addrKey]*srcState{} }

// srcState is one source's aggregate in memory (what the report shows).
// What counts toward a ban lives in the failure memory, not here: evicting
// a srcState forgets a report row's tail, never a failure.
type srcState struct {
	src     activity.Source
	session int64
	// holdUntil: no new decision before this (UnixNano): set to the ban's
	// end after a ban, and for a while after a refused one, so that events
	// still arriving from a banned or never-ban source cost no decision.
	holdUntil  int64
	touched    int64 // last move to the LRU front (UnixNano)
	prev, next *srcState
	dirty      bool
}

// markDirty queues s for the next flush; called with tableMu held. Evicted
// sources leave stale entries behind, so the list is compacted when it
// outgrows the table: without a writer it stays bounded.
func (t *sourceTable) markDirty(s *srcState) {
	if s.dirty {
		return
	}
	s.dirty = true
	if len(t.dirty) >= 2*len(t.byAddr)+1024 {
		live := t.dirty[:0]
		for _, d := range t.dirty {
			if d.dirty {
				live = append(live, d)
			}
		}
		clear(t.dirty[len(live):])
		t.dirty = live
	}
	t.dirty = append(t.dirty, s)
}

// get returns addr's state, creating it (and evicting the least recently
// seen one beyond maxSources); called with tableMu held.
func (t *sourceTable) get(addr netip.Addr, now time.Time, maxSources int) *srcState {
	k := keyOf(addr)
	s := t.byAddr[k]
	n := now.UnixNano()
	if s != nil {
		// Moving to the front at most once a second keeps the order good
		// enough for eviction (windows are minutes to hours) and spares a
		// burst from the same source the pointer chasing.
		if n-s.touched > int64(time.Second) || n < s.touched {
			s.touched = n
			t.lruTouch(s)
		}
		return s
	}
	if len(t.byAddr) >= maxSources {
		t.evict(t.lruTail)
	}
	t.nextSession++
	s = &srcState{src: activity.Source{Addr: addr}, session: t.nextSession, touched: n}
	t.byAddr[k] = s
	t.lruPush(s)
	return s
}

// lookup returns addr's state or nil; called with tableMu held.
func (t *sourceTable) lookup(addr netip.Addr) *srcState { return t.byAddr[keyOf(addr)] }

func (t *sourceTable) lruPush(s *srcState) {
	s.prev, s.next = nil, t.lruHead
	if t.lruHead != nil {
		t.lruHead.prev = s
	}
	t.lruHead = s
	if t.lruTail == nil {
		t.lruTail = s
	}
}

func (t *sourceTable) lruRemove(s *srcState) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		t.lruHead = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		t.lruTail = s.prev
	}
	s.prev, s.next = nil, nil
}

func (t *sourceTable) lruTouch(s *srcState) {
	if t.lruHead == s {
		return
	}
	t.lruRemove(s)
	t.lruPush(s)
}

// evict drops s from memory, handing its last state to the writer; called
// with tableMu held. Its DB row and any ban stay.
func (t *sourceTable) evict(s *srcState) {
	if s == nil {
		return
	}
	t.lruRemove(s)
	delete(t.byAddr, keyOf(s.src.Addr))
	t.evicted.Add(1)
	if s.dirty {
		s.dirty = false
		if len(t.evictedRows) < maxPendingSrc {
			t.evictedRows = append(t.evictedRows, state.SourceUpdate{Session: s.session, Source: cloneSource(&s.src)})
		} else {
			t.droppedRows.Add(1)
		}
		// s stays referenced by dirty until the next flush, which skips
		// it because dirty is now false.
	}
}

// evictOlderThan drops sources not seen since cut; the sweeper calls it
// with every window's horizon.
func (t *sourceTable) evictOlderThan(cut time.Time) int {
	n := 0
	t.tableMu.Lock()
	for t.lruTail != nil && t.lruTail.src.LastSeen.Before(cut) {
		t.evict(t.lruTail)
		n++
	}
	t.tableMu.Unlock()
	return n
}

// evictBeyond trims the table to max entries (a Reload lowered it).
func (t *sourceTable) evictBeyond(max int) {
	t.tableMu.Lock()
	for len(t.byAddr) > max {
		t.evict(t.lruTail)
	}
	t.tableMu.Unlock()
}

// takeRows hands the writer the rows of changed and evicted sources and the
// event log, appended to b.
func (t *sourceTable) takeRows(b *state.Batch) {
	t.tableMu.Lock()
	defer t.tableMu.Unlock()
	for _, s := range t.dirty {
		if s.dirty {
			s.dirty = false
			b.Sources = append(b.Sources, state.SourceUpdate{Session: s.session, Source: cloneSource(&s.src)})
		}
	}
	t.dirty = t.dirty[:0]
	b.Sources = append(b.Sources, t.evictedRows...)
	t.evictedRows = t.evictedRows[:0]
	if len(t.eventRows) > 0 {
		b.Events = append(b.Events, t.eventRows...)
		t.eventRows = make([]state.Event, 0, min(len(t.eventRows), 1024))
	}
}

// setUA records the User-Agent a contact look-up found for a.
func (t *sourceTable) setUA(a netip.Addr, ua string) {
	t.tableMu.Lock()
	defer t.tableMu.Unlock()
	if s := t.lookup(a); s != nil {
		s.src.LastUserAgent = ua
		t.markDirty(s)
	}
}

// release lets the next failure of a be decided at once (after an unban).
func (t *sourceTable) release(a netip.Addr) {
	t.tableMu.Lock()
	if s := t.lookup(a); s != nil {
		s.holdUntil = 0
	}
	t.tableMu.Unlock()
}

// reset makes every held source decided anew at its next failure (a
// Reload changed the mode).
func (t *sourceTable) reset(releaseHeld bool) {
	if !releaseHeld {
		return
	}
	t.tableMu.Lock()
	defer t.tableMu.Unlock()
	for _, s := range t.byAddr {
		s.holdUntil = 0
	}
}

func cloneSource(s *activity.Source) activity.Source {
	c := *s
	c.Accounts = append([]activity.AccountCount(nil), s.Accounts...)
	return c
}
