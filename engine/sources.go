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
	// dirtyHead..dirtyTail are the sources changed since their row was last
	// written, oldest change first, each once (srcState.dirty): a budgeted
	// flush writes from the head (rowbudget.go). They are linked through the
	// sources themselves, so the list never outgrows the table and an
	// eviction unlinks its source at once. evictedRows are the last state of
	// sources evicted before their row was written; eventRows the event log.
	dirtyHead, dirtyTail *srcState
	dirtyLen             int
	evictedRows          []state.SourceUpdate
	eventRows            []state.Event
	nextSession          int64
	sample               eventSampler // the event log's per-second budget under a flood
	rowPace              rowBudget    // the source rows' per-second budget under a flood
	kinds                [8]uint64
	lastEvent            time.Time

	evicted, droppedRows atomic.Uint64
	rowsWritten          atomic.Uint64 // source rows handed to the writer
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
	// dirty: s is in the table's dirty list (its row waits for a flush),
	// linked by dirtyPrev/dirtyNext; dirtyAt is when it joined (UnixNano of
	// the event that changed it), for the lag metric.
	dirty                bool
	dirtyPrev, dirtyNext *srcState
	dirtyAt              int64
}

// markDirty queues s's row for a flush, at the tail of the dirty list
// unless it waits there already (a source changing again keeps its place:
// its row, written later, carries every change); called with tableMu held.
// The list holds only sources in the table, so it is bounded by max_sources.
func (t *sourceTable) markDirty(s *srcState) {
	if s.dirty {
		return
	}
	s.dirty = true
	s.dirtyAt = t.lastEvent.UnixNano() // Handle sets lastEvent just before
	s.dirtyPrev, s.dirtyNext = t.dirtyTail, nil
	if t.dirtyTail != nil {
		t.dirtyTail.dirtyNext = s
	} else {
		t.dirtyHead = s
	}
	t.dirtyTail = s
	t.dirtyLen++
}

// unmarkDirty takes s out of the dirty list; called with tableMu held.
func (t *sourceTable) unmarkDirty(s *srcState) {
	if !s.dirty {
		return
	}
	if s.dirtyPrev != nil {
		s.dirtyPrev.dirtyNext = s.dirtyNext
	} else {
		t.dirtyHead = s.dirtyNext
	}
	if s.dirtyNext != nil {
		s.dirtyNext.dirtyPrev = s.dirtyPrev
	} else {
		t.dirtyTail = s.dirtyPrev
	}
	s.dirtyPrev, s.dirtyNext, s.dirty = nil, nil, false
	t.dirtyLen--
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
		t.unmarkDirty(s)
		if len(t.evictedRows) < maxPendingSrc {
			t.evictedRows = append(t.evictedRows, state.SourceUpdate{Session: s.session, Source: cloneSource(&s.src)})
		} else {
			t.droppedRows.Add(1)
		}
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
