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

	o := e.opts()
	t := &e.sources
	t.tableMu.Lock()
	s := t.get(addr, nowT, o.MaxSources)
	distinct0 := s.src.DistinctAccounts
	k, counted := s.src.Observe(&ev, nowT)
	t.kinds[k&7]++
	t.lastEvent = nowT
	t.markDirty(s)
	var trig *trigger
	switch {
	case k == activity.KindInjection:
		if s.holdUntil <= now {
			trig = &trigger{reason: "injection (" + sanitize(ev.Suspicion, 80) + ")"}
		}
	case counted && k.IsFailure():
		if last, ok := s.nthRecent(1); ok && now-last > max(o.findTime, o.slowFindTime) {
			// Quiet for longer than every window: accounts tried before
			// no longer count toward enumeration (a phone with three lines
			// failing once a week is not enumerating users).
			s.enumBase = int32(distinct0)
		}
		s.addFailure(now, o.ringSize)
		if s.holdUntil <= now {
			trig = e.thresholds(s, addr, now)
		}
	}
	if len(t.eventRows) < maxPendingEvents {
		row := state.Event{Time: nowT, Addr: addr, Type: ev.Type, Kind: k.String(), Service: ev.Service, Account: sanitize(ev.AccountID, 64)}
		if trig != nil {
			row.Decision = trig.reason
		}
		t.eventRows = append(t.eventRows, row)
	} else {
		e.droppedWrites.Add(1)
	}
	if trig != nil {
		s.enumBase = int32(s.src.DistinctAccounts)
		// Hold further decisions until ban() tells how long; a concurrent
		// event of the same source meanwhile finds the ban in the ban book.
		s.holdUntil = now + int64(time.Second)
	}
	t.tableMu.Unlock()

	if trig != nil {
		until, ok := e.ban(ctx, addr, trig.reason, nowT, start, flowOf(&ev))
		if !ok {
			// Refused (never-ban or set full): one decision and one log
			// line per find_time, not one per event.
			until = now + max(o.findTime, int64(time.Minute))
		}
		t.tableMu.Lock()
		s.holdUntil = until
		t.tableMu.Unlock()
		return
	}
	if k == activity.KindAuthOK {
		e.authOK(addr, &ev, nowT)
	}
}

// thresholds checks the windows after a counted failure; called with
// sources.tableMu held.
func (e *Engine) thresholds(s *srcState, addr netip.Addr, now int64) *trigger {
	o := e.opts()
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
	for _, p := range e.opts().StaticAllows {
		if p.Contains(a) {
			return false
		}
	}
	return !e.allows.isNever(a) && !e.d.Geo.Allowed(a)
}
