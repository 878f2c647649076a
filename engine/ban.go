package engine

import (
	"context"
	"errors"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/ami"
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
	for _, p := range e.pp().StaticAllows {
		if p.Contains(a) {
			return "static allow " + p.String() + " (firewall.allow)"
		}
	}
	now := e.now().UnixNano()
	e.amu.RLock()
	defer e.amu.RUnlock()
	if why, ok := e.never[a]; ok {
		return why
	}
	if al, ok := e.allows[a]; ok && (al.until == 0 || al.until > now) {
		return "learned push server (" + al.how + ")"
	}
	return ""
}

// banDuration is ban_time × factor^(offence-1), capped at max_ban_time.
func (e *Engine) banDuration(offence int) time.Duration {
	o := e.pp()
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
	monitor := !e.pp().Enforce
	nowN := now.UnixNano()

	k := keyOf(a)
	e.bmu.Lock()
	prev := e.bans[k]
	offence := int(prev.offences) + 1
	if prev.until > nowN {
		if !prev.monitor || monitor {
			e.bmu.Unlock()
			return prev.until, true // already banned (or already recorded as would-ban)
		}
		// A would-ban from monitor mode and the engine now enforces (reload
		// or restart): ban for real, as the same offence.
		offence = int(prev.offences)
	}
	if prev.active { // expired, not yet swept
		prev.active = false
		e.activeBans--
	}
	if !monitor && e.activeBans >= e.pp().BanMaxElem {
		e.bmu.Unlock()
		e.refuseFull(a, reason, now, errors.New("engine: ban set holds firewall.ban_maxelem entries"))
		return 0, false
	}
	dur := e.banDuration(offence)
	cur := banInfo{until: now.Add(dur).UnixNano(), offences: int32(offence), monitor: monitor, active: !monitor}
	e.bans[k] = cur
	if cur.active {
		e.activeBans++ // reserve the slot before the slow call
	}
	e.bmu.Unlock()

	d := Decision{Time: now, Kind: DecisionBan, Addr: a, Reason: reason, Duration: dur, Offence: offence}
	if monitor {
		d.Kind = DecisionWouldBan
		d.Latency = time.Since(start)
		e.log.Info("engine: would ban (firewall.mode monitor)", "addr", a, "reason", reason, "for", dur, "offence", offence)
	} else {
		err := e.fw.Add(ctx, firewall.SetBan, firewall.Entry{Prefix: prefixOf(a), Timeout: dur, Comment: sanitize("sipsentry: "+reason, 200)})
		d.Latency = time.Since(start)
		if err != nil {
			e.bmu.Lock()
			if e.bans[k] == cur {
				e.bans[k] = prev
				e.activeBans--
			}
			e.bmu.Unlock()
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
	e.bmu.Lock()
	e.pend.Bans = append(e.pend.Bans, state.Ban{Addr: a, Until: now.Add(dur), Offences: offence, Reason: reason, Created: now, Monitor: monitor})
	e.bmu.Unlock()
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
			"addr", a, "reason", reason, "max", e.pp().BanMaxElem, "err", err,
			"refused_unlogged", e.fullUnlogged.Swap(0))
	} else {
		e.fullUnlogged.Add(1)
	}
	e.decide(Decision{Time: now, Kind: DecisionRefused, Addr: a, Reason: reason, Err: "ban set full: " + err.Error()})
}

// flow is the connection an event came over, so the post-ban work can cut
// exactly that conntrack entry at once (firewall.FlowDropper).
type flow struct {
	addr          netip.Addr
	proto         string // "udp" | "tcp"; "" unknown
	remote, local netip.AddrPort
}

func flowOf(ev *ami.SecurityEvent) flow {
	f := flow{remote: ev.Remote.AddrPort, local: ev.Local.AddrPort}
	switch ev.Remote.Transport {
	case "UDP":
		f.proto = "udp"
	case "TCP", "TLS", "WS", "WSS":
		f.proto = "tcp"
	}
	if !f.local.IsValid() {
		f.proto = ""
	}
	return f
}

// enqueuePost schedules conntrack flushing and call hang-up for a new ban.
func (e *Engine) enqueuePost(f flow) {
	e.wmu.Lock()
	e.inQueue++
	e.wmu.Unlock()
	select {
	case e.postQ <- f:
	default:
		e.done()
		e.log.Warn("engine: post-ban queue full; established flows of this address are not flushed", "addr", f.addr)
	}
}

// postBanWalkEvery bounds the conntrack table walks: the addresses banned
// meanwhile wait for one walk (DropFlowsOf) at most this often. A walk costs
// 10-30 ms of CPU however few flows it finds (the kernel's conntrack hash is
// shared by every namespace), so one per ban turned a flood's bans into a
// tail of tens of milliseconds. The flow each ban's event came over is cut
// at once (DropFlow); the walk is for the address's other flows (RTP,
// other ports), which can wait a second.
const postBanWalkEvery = time.Second

// flowWalk collects the addresses that wait for the next conntrack walk.
type flowWalk struct {
	mu      sync.Mutex
	every   time.Duration // 0: postBanWalkEvery; tests change it
	pending map[netip.Addr]bool
	order   []netip.Addr
	timer   *time.Timer
	last    time.Time // when the last walk began (real time, not Deps.Now)
	// running is held for the length of a walk, so that walks never overlap
	// and walkNow returns only after the walk that took its addresses.
	running sync.Mutex
}

// postBan cuts the flows of newly banned addresses: first the flow each
// ban's event came over (one lookup each, when the backend can), then hangs
// up their calls (ARI). Every other flow of the addresses is left to the
// next coalesced conntrack walk (queueWalk), which neither the hang-ups nor
// the next bans wait for.
func (e *Engine) postBan(ctx context.Context, batch []flow) {
	defer func() {
		for range batch {
			e.done()
		}
	}()
	if fd, ok := e.fw.(firewall.FlowDropper); ok {
		for _, f := range batch {
			if f.proto == "" {
				continue
			}
			if err := fd.DropFlow(ctx, f.proto, f.remote, f.local); err != nil {
				e.log.Warn("engine: dropping the banned flow failed", "addr", f.addr, "err", err)
			}
		}
	}
	addrs := make([]netip.Addr, len(batch))
	for i, f := range batch {
		addrs[i] = f.addr
	}
	e.queueWalk(ctx, addrs...)
	if e.d.Hangup != nil {
		for _, a := range addrs {
			hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := e.d.Hangup(hctx, a); err != nil {
				e.log.Warn("engine: hanging up calls of banned address failed", "addr", a, "err", err)
			}
			cancel()
		}
	}
}

// queueWalk adds addrs to the next conntrack walk and schedules it: at
// least postBanWalkEvery after the last one began, and a tenth of that after
// the first address of a quiet spell, so that a burst shares one walk.
func (e *Engine) queueWalk(ctx context.Context, addrs ...netip.Addr) {
	w := &e.walk
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addLocked(addrs)
	if w.timer != nil || len(w.order) == 0 {
		return
	}
	every := w.every
	if every <= 0 {
		every = postBanWalkEvery
	}
	delay := max(every-time.Since(w.last), every/10)
	w.timer = time.AfterFunc(delay, func() {
		w.mu.Lock()
		w.timer = nil
		w.mu.Unlock()
		// Not cut short by Run's end: the walk is bounded by the kernel.
		e.walkNow(context.WithoutCancel(ctx))
	})
}

func (w *flowWalk) addLocked(addrs []netip.Addr) {
	if w.pending == nil {
		w.pending = map[netip.Addr]bool{}
	}
	for _, a := range addrs {
		if a.IsValid() && !w.pending[a] {
			w.pending[a] = true
			w.order = append(w.order, a)
		}
	}
}

// walkNow runs the pending conntrack walk at once (after any walk in
// progress) and returns when every address queued before the call has been
// walked. Sync uses it so tests and replay see the complete post-ban work;
// Run's shutdown uses it so no queued address is lost.
func (e *Engine) walkNow(ctx context.Context) {
	w := &e.walk
	w.running.Lock()
	defer w.running.Unlock()
	w.mu.Lock()
	addrs := w.order
	w.order = nil
	clear(w.pending)
	if len(addrs) > 0 {
		w.last = time.Now()
	}
	w.mu.Unlock()
	if len(addrs) == 0 {
		return
	}
	if bd, ok := e.fw.(firewall.BulkFlowDropper); ok {
		if err := bd.DropFlowsOf(ctx, addrs); err != nil {
			e.log.Warn("engine: dropping conntrack flows failed", "addrs", len(addrs), "err", err)
		}
		return
	}
	for _, a := range addrs {
		if err := e.fw.DropFlows(ctx, a); err != nil {
			e.log.Warn("engine: dropping conntrack flows failed", "addr", a, "err", err)
		}
	}
}

// finishWalks is Run's last post-ban step: the addresses whose post-ban
// work was still queued join the pending walk, which runs now, so a
// shutdown loses none of them (their hang-ups are skipped).
func (e *Engine) finishWalks(queued []netip.Addr) {
	w := &e.walk
	w.mu.Lock()
	if w.timer != nil {
		w.timer.Stop() // walkNow below takes its addresses
		w.timer = nil
	}
	w.addLocked(queued)
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.walkNow(ctx)
}

// Unban lifts a's ban now (kernel and DB); its offence count stays.
func (e *Engine) Unban(ctx context.Context, a netip.Addr) error {
	a = a.Unmap()
	now := e.now()
	e.bmu.Lock()
	k := keyOf(a)
	b, ok := e.bans[k]
	if ok {
		if b.active {
			b.active = false
			e.activeBans--
		}
		b.until = now.UnixNano()
		e.bans[k] = b
	}
	e.pend.Lifts = append(e.pend.Lifts, a)
	e.bmu.Unlock()
	e.mu.Lock()
	if s := e.srcs[k]; s != nil {
		s.holdUntil = 0
	}
	e.mu.Unlock()
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
