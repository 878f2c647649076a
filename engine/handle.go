package engine

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/engine/failmem"
	"github.com/sipsentry/sipsentry/state"
)

// Handle takes one parsed security event. It is the hot path: memory only,
// unless the event crosses a threshold and a ban is made.
//
// Two memories see each event: the source table keeps the report's
// aggregate (accounts, User-Agent; bounded by MaxSources, evictable), and
// the failure memory (engine/failmem) decides — it never forgets a source
// on its way to a ban.
func (e *Engine) Handle(ctx context.Context, ev ami.SecurityEvent) {
	e.events.Add(1)
	if !ev.Remote.IsValid() {
		// Nothing to attribute (e.g. s9-11's cut-off InvalidAccountID):
		// count it, never guess a source from other fields.
		e.malformed.Add(1)
		return
	}
	// The latency runs from the socket read (before the AMI queue) when
	// the event came through the client.
	start := ev.Received
	if start.IsZero() {
		start = time.Now()
	}
	addr := ev.Remote.Addr().Unmap()
	nowT := e.now()
	now := nowT.UnixNano()

	detach(&ev)

	o := e.opts()
	t := &e.sources
	t.tableMu.Lock()
	s := t.get(addr, nowT, o.MaxSources)
	k, counted := s.src.Observe(&ev, nowT)
	t.kinds[k&7]++
	t.lastEvent = nowT
	t.markDirty(s)
	// The failure memory is a leaf lock inside tableMu; its allow callback
	// takes allowsMu (order: sources, allows).
	v := e.failures.Observe(addr, observation(&ev, k, counted, nowT))
	held := s.holdUntil > now
	reason := ""
	switch {
	case held:
	case k == activity.KindInjection:
		reason = "injection (" + sanitize(ev.Suspicion, 80) + ")"
	case counted && k.IsFailure() && o.GeoMode == GeoStrict && e.foreign(addr):
		reason = "geo strict: failure from outside the allowed countries"
	case v.Ban && !e.bans.banned(addr, now, o.Enforce):
		// A source whose aggregate was evicted while it stayed banned gets
		// no second decision.
		reason = v.Reason
	}
	// A successful login's row is kept like a decision's: known addresses
	// are restored from it at the next start.
	class := rowPlain
	switch {
	case k == activity.KindAuthOK:
		class = rowAlways
	case reason != "":
		class = rowDecision
	}
	if t.sample.keep(now, class) && len(t.eventRows) < maxPendingEvents {
		row := state.Event{Time: nowT, Addr: addr, Type: ev.Type, Kind: k.String(), Service: ev.Service, Account: sanitize(ev.AccountID, 64)}
		row.Decision = reason
		t.eventRows = append(t.eventRows, row)
	} else {
		e.droppedWrites.Add(1)
	}
	if reason != "" {
		// Hold further decisions until ban() tells how long; a concurrent
		// event of the same source meanwhile finds the ban in the ban book.
		s.holdUntil = now + int64(time.Second)
	}
	t.tableMu.Unlock()

	if v.Flag != "" {
		e.flagFailures(addr, v.Flag, nowT)
	}
	if reason != "" {
		until, ok := e.ban(ctx, addr, reason, nowT, start, flowOf(&ev))
		if !ok {
			// Refused (never-ban or set full): one decision and one log
			// line per find_time, not one per event.
			until = now + max(o.findTime, int64(time.Minute))
		}
		t.tableMu.Lock()
		if cur := t.lookup(addr); cur != nil {
			cur.holdUntil = until
		}
		t.tableMu.Unlock()
		return
	}
	if k == activity.KindAuthOK {
		e.authOK(addr, &ev, nowT)
	}
}

// Flag kinds of the failure memory's notes (state flags table, report).
const (
	FlagKnownFailures = "known_address_failures"
	FlagUnanswered    = "unanswered_challenges"
	FlagBlind         = "blind_evidence"
)

// flagFailures logs, counts and records a note of the failure memory
// (failmem says each once per address and spell of activity).
func (e *Engine) flagFailures(a netip.Addr, note string, now time.Time) {
	kind := FlagKnownFailures
	switch note {
	case failmem.FlagUnanswered:
		kind = FlagUnanswered
	case failmem.FlagBlind:
		kind = FlagBlind
	}
	e.log.Warn("engine: "+note, "addr", a, "flag", kind)
	e.writer.queue(func(b *state.Batch) {
		b.Flags = append(b.Flags, state.Flag{Addr: a, Kind: kind, Note: note, Time: now})
	})
	e.decide(Decision{Time: now, Kind: DecisionFlagged, Addr: a, Reason: note})
}

// tickFailures realizes the challenges that went unanswered past their
// timeout and acts on what that decides; Run calls it every second.
func (e *Engine) tickFailures(ctx context.Context) {
	now := e.now()
	e.failures.Tick(now, func(a netip.Addr, v failmem.Verdict) {
		if v.Flag != "" {
			e.flagFailures(a, v.Flag, now)
		}
		if v.Ban && !e.bans.banned(a, now.UnixNano(), e.opts().Enforce) {
			e.ban(ctx, a, v.Reason, now, time.Now(), flow{})
		}
	})
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
	return !e.allows.isNever(a) && e.d.LocalReason(a) == "" && !e.d.Geo.Allowed(a)
}
