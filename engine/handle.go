package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/state"
)

// srcState is one source in memory: the shared aggregate plus the ring of
// its recent failure times that the windows read.
type srcState struct {
	src activity.Source
	// fails holds up to ringSize failure times (UnixNano); once full, head
	// is the oldest. It grows on demand so a one-event source costs 8 bytes.
	fails   []int64
	session int64
	// holdUntil: no new decision before this (UnixNano): set to the ban's
	// end after a ban, and for a while after a refused one, so that events
	// still arriving from a banned or never-ban source cost no decision.
	holdUntil  int64
	touched    int64 // last move to the LRU front (UnixNano)
	prev, next *srcState
	head       int32
	enumBase   int32 // DistinctAccounts at the last ban: enumeration counts anew after it
	dirty      bool
}

func (s *srcState) addFailure(t int64, size int) {
	if len(s.fails) < size {
		s.fails = append(s.fails, t)
		return
	}
	s.fails[s.head] = t
	s.head = int32((int(s.head) + 1) % size)
}

// nthRecent returns the n-th most recent failure time (1 = newest).
func (s *srcState) nthRecent(n int) (int64, bool) {
	l := len(s.fails)
	if n < 1 || n > l {
		return 0, false
	}
	return s.fails[(int(s.head)+l-n)%l], true
}

// within reports whether n failures fell inside the window ending at now.
func (s *srcState) within(n int, window, now int64) bool {
	t, ok := s.nthRecent(n)
	return ok && now-t <= window
}

type trigger struct {
	reason string
}

// Handle takes one parsed security event. It is the hot path: memory only,
// unless the event crosses a threshold and a ban is made.
func (e *Engine) Handle(ctx context.Context, ev ami.SecurityEvent) {
	e.events.Add(1)
	if !ev.Remote.IsValid() {
		// Nothing to attribute (e.g. s9-11's cut-off InvalidAccountID):
		// count it, never guess a source from other fields.
		e.malformed.Add(1)
		return
	}
	start := time.Now()
	addr := ev.Remote.Addr().Unmap()
	nowT := e.now()
	now := nowT.UnixNano()

	detach(&ev)

	e.mu.Lock()
	s := e.source(addr, nowT)
	distinct0 := s.src.DistinctAccounts
	k, counted := s.src.Observe(&ev, nowT)
	e.kinds[k&7]++
	e.lastEvent = nowT
	e.markDirty(s)
	var trig *trigger
	switch {
	case k == activity.KindInjection:
		if s.holdUntil <= now {
			trig = &trigger{reason: "injection (" + sanitize(ev.Suspicion, 80) + ")"}
		}
	case counted && k.IsFailure():
		p := e.pp()
		if last, ok := s.nthRecent(1); ok && now-last > max(p.findTime, p.slowFindTime) {
			// Quiet for longer than every window: accounts tried before
			// no longer count toward enumeration (a phone with three lines
			// failing once a week is not enumerating users).
			s.enumBase = int32(distinct0)
		}
		s.addFailure(now, p.ringSize)
		if s.holdUntil <= now {
			trig = e.thresholds(s, addr, now)
		}
	}
	if len(e.pendEvents) < maxPendingEvents {
		row := state.Event{Time: nowT, Addr: addr, Type: ev.Type, Kind: k.String(), Service: ev.Service, Account: sanitize(ev.AccountID, 64)}
		if trig != nil {
			row.Decision = trig.reason
		}
		e.pendEvents = append(e.pendEvents, row)
	} else {
		e.droppedWrites.Add(1)
	}
	if trig != nil {
		s.enumBase = int32(s.src.DistinctAccounts)
		// Hold further decisions until ban() tells how long; a concurrent
		// event of the same source meanwhile finds the ban in e.bans.
		s.holdUntil = now + int64(time.Second)
	}
	e.mu.Unlock()

	if trig != nil {
		until, ok := e.ban(ctx, addr, trig.reason, nowT, start, flowOf(&ev))
		if !ok {
			// Refused (never-ban or set full): one decision and one log
			// line per find_time, not one per event.
			until = now + max(e.pp().findTime, int64(time.Minute))
		}
		e.mu.Lock()
		s.holdUntil = until
		e.mu.Unlock()
		return
	}
	if k == activity.KindAuthOK {
		e.authOK(addr, &ev, nowT)
	}
}

// markDirty queues s for the next flush; called with mu held. Evicted
// sources leave stale entries behind, so the list is compacted when it
// outgrows the table: without a writer it stays bounded.
func (e *Engine) markDirty(s *srcState) {
	if s.dirty {
		return
	}
	s.dirty = true
	if len(e.dirty) >= 2*len(e.srcs)+1024 {
		live := e.dirty[:0]
		for _, d := range e.dirty {
			if d.dirty {
				live = append(live, d)
			}
		}
		clear(e.dirty[len(live):])
		e.dirty = live
	}
	e.dirty = append(e.dirty, s)
}

// thresholds checks the windows after a counted failure; called with mu held.
func (e *Engine) thresholds(s *srcState, addr netip.Addr, now int64) *trigger {
	o := e.pp()
	if o.GeoMode == GeoStrict && e.foreign(addr) {
		return &trigger{reason: "geo strict: failure from outside the allowed countries"}
	}
	if s.within(o.MaxFailures, o.findTime, now) {
		return &trigger{reason: fmt.Sprintf("%d failures in %s", o.MaxFailures, o.FindTime)}
	}
	if o.SlowMaxFailures > 0 && s.within(o.SlowMaxFailures, o.slowFindTime, now) {
		return &trigger{reason: fmt.Sprintf("slow scan: %d failures in %s", o.SlowMaxFailures, o.SlowFindTime)}
	}
	if n := s.src.DistinctAccounts - int(s.enumBase); o.EnumAccounts > 0 && n >= o.EnumAccounts {
		return &trigger{reason: fmt.Sprintf("user enumeration: %d accounts tried", n)}
	}
	return nil
}

// source returns addr's state, creating it (and evicting the least recently
// seen one beyond max_sources); called with mu held.
func (e *Engine) source(addr netip.Addr, now time.Time) *srcState {
	k := keyOf(addr)
	s := e.srcs[k]
	n := now.UnixNano()
	if s != nil {
		// Moving to the front at most once a second keeps the order good
		// enough for eviction (windows are minutes to hours) and spares a
		// burst from the same source the pointer chasing.
		if n-s.touched > int64(time.Second) || n < s.touched {
			s.touched = n
			e.lruTouch(s)
		}
		return s
	}
	if len(e.srcs) >= e.pp().MaxSources {
		e.evict(e.lruTail)
	}
	e.nextSession++
	s = &srcState{src: activity.Source{Addr: addr}, session: e.nextSession, touched: n}
	e.srcs[k] = s
	e.lruPush(s)
	return s
}

func (e *Engine) lruPush(s *srcState) {
	s.prev, s.next = nil, e.lruHead
	if e.lruHead != nil {
		e.lruHead.prev = s
	}
	e.lruHead = s
	if e.lruTail == nil {
		e.lruTail = s
	}
}

func (e *Engine) lruRemove(s *srcState) {
	if s.prev != nil {
		s.prev.next = s.next
	} else {
		e.lruHead = s.next
	}
	if s.next != nil {
		s.next.prev = s.prev
	} else {
		e.lruTail = s.prev
	}
	s.prev, s.next = nil, nil
}

func (e *Engine) lruTouch(s *srcState) {
	if e.lruHead == s {
		return
	}
	e.lruRemove(s)
	e.lruPush(s)
}

// evict drops s from memory, handing its last state to the writer; called
// with mu held. Its DB row and any ban stay.
func (e *Engine) evict(s *srcState) {
	if s == nil {
		return
	}
	e.lruRemove(s)
	delete(e.srcs, keyOf(s.src.Addr))
	e.evicted.Add(1)
	if s.dirty {
		s.dirty = false
		if len(e.evictedUpd) < maxPendingSrc {
			e.evictedUpd = append(e.evictedUpd, state.SourceUpdate{Session: s.session, Source: cloneSource(&s.src)})
		} else {
			e.droppedSrc.Add(1)
		}
		// s stays referenced by e.dirty until the next flush, which skips
		// it because dirty is now false.
	}
}

// evictOld drops sources not seen for longer than every window; called by
// the sweeper.
func (e *Engine) evictOld(now time.Time) int {
	horizon := time.Duration(max(e.pp().findTime, e.pp().slowFindTime))
	cut := now.Add(-horizon)
	n := 0
	e.mu.Lock()
	for e.lruTail != nil && e.lruTail.src.LastSeen.Before(cut) {
		e.evict(e.lruTail)
		n++
	}
	e.mu.Unlock()
	return n
}

func cloneSource(s *activity.Source) activity.Source {
	c := *s
	c.Accounts = append([]activity.AccountCount(nil), s.Accounts...)
	return c
}

// detach copies the fields a Source or an event-log row may keep
// (activity.Source.Observe keeps Service, the last unknown-account SessionID
// and new account names); known names become constants.
func detach(ev *ami.SecurityEvent) {
	ev.Type = ami.InternType(ev.Type)
	ev.Service = ami.InternService(ev.Service)
	switch ev.AccountID {
	case "":
	case ami.UnknownAccount:
		ev.AccountID = ami.UnknownAccount
		ev.SessionID = strings.Clone(ev.SessionID)
	default:
		ev.AccountID = strings.Clone(ev.AccountID)
		if ev.Type == ami.EventInvalidAccountID {
			ev.SessionID = strings.Clone(ev.SessionID)
		}
	}
}

// sanitize keeps printable ASCII of attacker-shaped text (for logs, DB
// columns and ipset comments) and cuts it to n bytes.
func sanitize(s string, n int) string {
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			ok = false
			break
		}
	}
	if ok && len(s) <= n {
		return s
	}
	b := make([]byte, 0, min(len(s), n))
	for i := 0; i < len(s) && len(b) < n; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			c = '?'
		}
		b = append(b, c)
	}
	return string(b)
}

// foreign reports whether a is outside the allowed countries. Addresses no
// country list holds but that are plainly local (loopback, private,
// link-local, the host's own, the AMI peer, static allows) count as home, so
// a LAN phone is never "foreign".
func (e *Engine) foreign(a netip.Addr) bool {
	if e.d.Geo == nil || !a.IsGlobalUnicast() || a.IsPrivate() {
		return false
	}
	for _, p := range e.pp().StaticAllows {
		if p.Contains(a) {
			return false
		}
	}
	e.amu.RLock()
	_, local := e.never[a]
	e.amu.RUnlock()
	return !local && !e.d.Geo.Allowed(a)
}
