package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// limitedBroadcast is 255.255.255.255: never a source, whatever Asterisk
// logged.
var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// neverBan returns why a must not be banned, or "". The engine refuses by
// itself what can never be one attacker's source (broadcast, unspecified,
// multicast, loopback, link-local), then asks the host's addresses
// (Deps.LocalReason), the static allows and the allow book.
func (e *Engine) neverBan(a netip.Addr) string {
	switch {
	case a == limitedBroadcast:
		return "the limited broadcast address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsMulticast():
		return "a multicast address"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast():
		return "a link-local address"
	}
	if why := e.d.LocalReason(a); why != "" {
		return why
	}
	for _, p := range e.opts().StaticAllows {
		if p.Contains(a) {
			return "static allow " + p.String() + " (firewall.allow)"
		}
	}
	return e.allows.neverReason(a, e.now().UnixNano())
}

// banDuration is ban_time × factor^(offence-1), capped at max_ban_time.
func (e *Engine) banDuration(offence int) time.Duration {
	o := e.opts()
	d := float64(o.BanTime) * math.Pow(o.EscalationFactor, float64(offence-1))
	if d > float64(o.MaxBanTime) || math.IsInf(d, 0) || math.IsNaN(d) {
		return o.MaxBanTime
	}
	return time.Duration(d)
}

// ban bans a (or, in firewall monitor mode, records that it would). start is when
// Handle began, for the latency figure. It returns the ban's end (UnixNano;
// 0 after a firewall error), and false when a is on the never-ban list or
// the ban set is full (the caller then leaves the source alone for a while
// instead of retrying at every event).
func (e *Engine) ban(ctx context.Context, a netip.Addr, reason string, now time.Time, start time.Time, fl flow) (until int64, ok bool) {
	rec, err := e.banWith(ctx, banRequest{addr: a, reason: reason, now: now, start: start, flow: fl})
	switch {
	case err == nil:
		return rec.Until.UnixNano(), true
	case errors.Is(err, ErrNeverBan), errors.Is(err, firewall.ErrSetFull):
		return 0, false
	default:
		return 0, true // a firewall error: try again at the next failure
	}
}

// banRequest is one ban to make: by the engine (Handle) or by an operator.
type banRequest struct {
	addr       netip.Addr
	reason     string
	now, start time.Time
	flow       flow
	// manual: an operator's ban (BanManual): it may extend a running ban
	// and records uid. dur 0 means the escalated ban time.
	manual bool
	uid    int
	dur    time.Duration
	// origin of a manual ban that no operator made (a CrowdSec decision:
	// "crowdsec:<origin>"); "" is state.OriginManual.
	origin string
}

// banWith makes r's ban: the never-ban rules, escalation, the set's
// capacity, the kernel (when enforcing), the writer, the decision. Errors
// wrap ErrNeverBan, firewall.ErrSetFull or the backend's error; every
// refusal is logged and counted as a decision here.
func (e *Engine) banWith(ctx context.Context, r banRequest) (BanRecord, error) {
	a, reason, now := r.addr, r.reason, r.now
	if why := e.neverBan(a); why != "" {
		e.log.Info("engine: ban refused", "addr", a, "reason", reason, "refused_because", why)
		e.decide(Decision{Time: now, Kind: DecisionRefused, Addr: a, Reason: reason, Err: "never ban: " + why})
		return BanRecord{}, fmt.Errorf("%w: %s (%s)", ErrNeverBan, a, why)
	}
	o := e.opts()
	monitor := !o.Enforce
	nowN := now.UnixNano()

	k := keyOf(a)
	bk := &e.bans
	bk.bansMu.Lock()
	prev, _ := bk.byAddr.Get(a)
	offence := int(prev.offences) + 1
	if prev.until > nowN {
		if !r.manual && (!prev.monitor || monitor) {
			bk.bansMu.Unlock()
			return e.banRecordOf(a, prev), nil // already banned (or already recorded as would-ban)
		}
		// A would-ban from monitor mode and the engine now enforces (reload
		// or restart), or an operator's ban of a banned address: ban for
		// real, as the same offence.
		offence = int(prev.offences)
	}
	wasActive := prev.active && prev.until > nowN
	if prev.active && !wasActive { // expired, not yet swept
		prev.active = false
		bk.active--
	}
	if !monitor && !wasActive && bk.active >= o.BanMaxElem {
		bk.bansMu.Unlock()
		err := fmt.Errorf("engine: ban set holds firewall.ban_maxelem (%d) entries: %w", o.BanMaxElem, firewall.ErrSetFull)
		e.refuseFull(a, reason, now, err)
		return BanRecord{}, err
	}
	dur := r.dur
	if dur <= 0 {
		dur = e.banDuration(offence)
	}
	untilT := now.Add(dur)
	if r.manual && wasActive && prev.until > untilT.UnixNano() {
		untilT = time.Unix(0, prev.until) // an operator's ban never shortens a running one
		dur = untilT.Sub(now)
	}
	cur := banInfo{until: untilT.UnixNano(), since: unixSeconds(now), offences: int32(offence),
		reason: bk.reasons.intern(reason), monitor: monitor, active: !monitor, manual: r.manual}
	comment := bk.reasons.comment[cur.reason]
	bk.byAddr.Set(a, cur)
	if cur.active && !wasActive {
		bk.active++ // reserve the slot before the slow call
	}
	prevExt, hadExt := bk.external[k]
	if r.manual {
		bk.external[k] = externalBan{uid: r.uid, origin: cmp.Or(r.origin, state.OriginManual)}
	} else {
		delete(bk.external, k)
	}
	bk.bansMu.Unlock()

	d := Decision{Time: now, Kind: DecisionBan, Addr: a, Reason: reason, Duration: dur, Offence: offence}
	if monitor {
		d.Kind = DecisionWouldBan
		d.Latency = time.Since(r.start)
		e.log.Info("engine: would ban (firewall.mode monitor)", "addr", a, "reason", reason, "for", dur, "offence", offence, "manual", r.manual)
	} else {
		err := e.fw.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: prefixOf(a), Timeout: dur, Comment: comment})
		d.Latency = time.Since(r.start)
		if err != nil {
			bk.bansMu.Lock()
			if now, _ := bk.byAddr.Get(a); now == cur {
				bk.byAddr.Set(a, prev)
				if !wasActive {
					bk.active--
				}
				if hadExt {
					bk.external[k] = prevExt
				} else {
					delete(bk.external, k)
				}
			}
			bk.bansMu.Unlock()
			if errors.Is(err, firewall.ErrSetFull) {
				e.refuseFull(a, reason, now, err)
				return BanRecord{}, err
			}
			e.log.Error("engine: ban failed", "addr", a, "reason", reason, "err", err)
			e.decide(Decision{Time: now, Kind: DecisionRefused, Addr: a, Reason: reason, Err: err.Error()})
			return BanRecord{}, fmt.Errorf("engine: ban of %s not made: %w", a, err)
		}
		if r.manual {
			e.log.Info("engine: banned by "+cmp.Or(r.origin, "an operator"), "addr", a, "reason", reason, "for", dur, "offence", offence, "uid", r.uid)
		} else {
			e.log.Info("engine: banned", "addr", a, "reason", reason, "for", dur, "offence", offence, "latency", d.Latency)
		}
		fl := r.flow
		fl.addr = a
		e.afterBan(ctx, fl, r.manual)
	}
	row := state.Ban{Addr: a, Until: untilT, Offences: offence, Reason: reason, Created: now, Monitor: monitor,
		Origin: state.OriginEngine, UID: state.NoUID}
	if r.manual {
		row.Origin, row.UID = cmp.Or(r.origin, state.OriginManual), r.uid
	}
	e.writer.queue(func(b *state.Batch) { b.Bans = append(b.Bans, row) })
	e.decide(d)
	return e.banRecordOf(a, cur), nil
}

// afterBan hands a new ban's flows and calls to the post-ban workers, or,
// for an operator's ban without Run (a one-shot command), cuts the
// address's flows at once.
func (e *Engine) afterBan(ctx context.Context, fl flow, manual bool) {
	if !manual || e.running.Load() {
		e.enqueuePost(fl)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.fw.DropFlows(dctx, fl.addr); err != nil {
		e.log.Warn("engine: dropping conntrack flows failed", "addr", fl.addr, "err", err)
	}
}

// refuseFull logs a ban the full set could not take: the first one at once,
// then at most one line per 10 s with the number left unlogged, so that a
// flood of distinct sources does not become a flood of log lines.
func (e *Engine) refuseFull(a netip.Addr, reason string, now time.Time, err error) {
	e.fullRefusals.Add(1)
	last := e.fullLogged.Load()
	if n := now.UnixNano(); (last == 0 || n-last >= int64(10*time.Second)) && e.fullLogged.CompareAndSwap(last, n) {
		e.log.Warn("engine: ban refused: the ban set is full; raise firewall.ban_maxelem or shorten ban times",
			"addr", a, "reason", reason, "max", e.opts().BanMaxElem, "err", err,
			"refused_unlogged", e.fullUnlogged.Swap(0))
	} else {
		e.fullUnlogged.Add(1)
	}
	e.decide(Decision{Time: now, Kind: DecisionRefused, Addr: a, Reason: reason, Err: "ban set full: " + err.Error()})
}
