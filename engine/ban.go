package engine

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// neverBan returns why a must not be banned, or "".
func (e *Engine) neverBan(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return "loopback"
	case a.IsUnspecified() || a.IsMulticast():
		return "not a unicast address"
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
	if why := e.neverBan(a); why != "" {
		e.log.Info("engine: ban refused", "addr", a, "reason", reason, "refused_because", why)
		e.decide(Decision{Time: now, Kind: DecisionRefused, Addr: a, Reason: reason, Err: "never ban: " + why})
		return 0, false
	}
	o := e.opts()
	monitor := !o.Enforce
	nowN := now.UnixNano()

	k := keyOf(a)
	bk := &e.bans
	bk.bansMu.Lock()
	prev := bk.byAddr[k]
	offence := int(prev.offences) + 1
	if prev.until > nowN {
		if !prev.monitor || monitor {
			bk.bansMu.Unlock()
			return prev.until, true // already banned (or already recorded as would-ban)
		}
		// A would-ban from monitor mode and the engine now enforces (reload
		// or restart): ban for real, as the same offence.
		offence = int(prev.offences)
	}
	if prev.active { // expired, not yet swept
		prev.active = false
		bk.active--
	}
	if !monitor && bk.active >= o.BanMaxElem {
		bk.bansMu.Unlock()
		e.refuseFull(a, reason, now, errors.New("engine: ban set holds firewall.ban_maxelem entries"))
		return 0, false
	}
	dur := e.banDuration(offence)
	cur := banInfo{until: now.Add(dur).UnixNano(), offences: int32(offence), monitor: monitor, active: !monitor}
	bk.byAddr[k] = cur
	if cur.active {
		bk.active++ // reserve the slot before the slow call
	}
	bk.bansMu.Unlock()

	d := Decision{Time: now, Kind: DecisionBan, Addr: a, Reason: reason, Duration: dur, Offence: offence}
	if monitor {
		d.Kind = DecisionWouldBan
		d.Latency = time.Since(start)
		e.log.Info("engine: would ban (firewall.mode monitor)", "addr", a, "reason", reason, "for", dur, "offence", offence)
	} else {
		err := e.fw.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: prefixOf(a), Timeout: dur, Comment: sanitize("sipsentry: "+reason, 200)})
		d.Latency = time.Since(start)
		if err != nil {
			bk.bansMu.Lock()
			if bk.byAddr[k] == cur {
				bk.byAddr[k] = prev
				bk.active--
			}
			bk.bansMu.Unlock()
			if errors.Is(err, firewall.ErrSetFull) {
				e.refuseFull(a, reason, now, err)
				return 0, false
			}
			e.log.Error("engine: ban failed", "addr", a, "reason", reason, "err", err)
			e.decide(Decision{Time: now, Kind: DecisionRefused, Addr: a, Reason: reason, Err: err.Error()})
			return 0, true // a firewall error: try again at the next failure
		}
		e.log.Info("engine: banned", "addr", a, "reason", reason, "for", dur, "offence", offence, "latency", d.Latency)
		fl.addr = a
		e.enqueuePost(fl)
	}
	e.writer.queue(func(b *state.Batch) {
		b.Bans = append(b.Bans, state.Ban{Addr: a, Until: now.Add(dur), Offences: offence, Reason: reason, Created: now, Monitor: monitor})
	})
	e.decide(d)
	return cur.until, true
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

// Unban lifts a's ban now (kernel and DB); its offence count stays.
func (e *Engine) Unban(ctx context.Context, a netip.Addr) error {
	a = a.Unmap()
	now := e.now()
	bk := &e.bans
	bk.bansMu.Lock()
	k := keyOf(a)
	b, ok := bk.byAddr[k]
	if ok {
		if b.active {
			b.active = false
			bk.active--
		}
		b.until = now.UnixNano()
		bk.byAddr[k] = b
	}
	bk.bansMu.Unlock()
	e.writer.queue(func(b *state.Batch) { b.Lifts = append(b.Lifts, a) })
	e.sources.release(a)
	if err := e.fw.Delete(ctx, firewall.SetBan, prefixOf(a)); err != nil {
		return err
	}
	e.decide(Decision{Time: now, Kind: DecisionUnban, Addr: a, Reason: "unban"})
	return nil
}

// Ban bans a by hand (e.g. `sipsentry ban` through the daemon), with the
// same escalation and never-ban rules as automatic bans.
func (e *Engine) Ban(ctx context.Context, a netip.Addr, reason string) {
	now := e.now()
	e.ban(ctx, a.Unmap(), "manual: "+sanitize(reason, 100), now, time.Now(), flow{})
}
