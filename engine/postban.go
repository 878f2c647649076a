package engine

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
)

// postBanWork is what follows a ban off the hot path: cutting the flow the
// event came over, the coalesced conntrack walk for the address's other
// flows, and hanging up its calls (ARI).
type postBanWork struct {
	queue chan flow
	walk  flowWalk
}

func (p *postBanWork) init() { p.queue = make(chan flow, 4096) }

// runPostBan takes banned flows off the queue until ctx ends, a burst at a
// time: the burst's exact-flow drops and hang-ups go together (the full
// conntrack walk is coalesced by queueWalk).
func (e *Engine) runPostBan(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-e.post.queue:
			batch := []flow{f}
		more:
			for len(batch) < 256 {
				select {
				case f := <-e.post.queue:
					batch = append(batch, f)
				default:
					break more
				}
			}
			e.postBan(ctx, batch)
		}
	}
}

// inFlight counts push examinations and post-ban jobs queued or running,
// so that Sync can wait for them.
type inFlight struct {
	countMu sync.Mutex // guards n
	zero    *sync.Cond // broadcast when n reaches 0 (and when a waiter's ctx ends)
	n       int
}

func (w *inFlight) init() { w.zero = sync.NewCond(&w.countMu) }

func (w *inFlight) add() {
	w.countMu.Lock()
	w.n++
	w.countMu.Unlock()
}

func (w *inFlight) done() {
	w.countMu.Lock()
	w.n--
	if w.n <= 0 {
		w.n = 0
		w.zero.Broadcast()
	}
	w.countMu.Unlock()
}

// wait returns when nothing is in flight or ctx ends.
func (w *inFlight) wait(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		w.countMu.Lock()
		w.zero.Broadcast()
		w.countMu.Unlock()
	})
	defer stop()
	w.countMu.Lock()
	for w.n > 0 && ctx.Err() == nil {
		w.zero.Wait()
	}
	w.countMu.Unlock()
	return ctx.Err()
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
	e.work.add()
	select {
	case e.post.queue <- f:
	default:
		e.work.done()
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
	pendingMu sync.Mutex    // guards every, pending, order, timer, last
	every     time.Duration // 0: postBanWalkEvery; tests change it
	pending   map[netip.Addr]bool
	order     []netip.Addr
	timer     *time.Timer
	last      time.Time // when the last walk began (real time, not Deps.Now)
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
			e.work.done()
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
	w := &e.post.walk
	w.pendingMu.Lock()
	defer w.pendingMu.Unlock()
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
		w.pendingMu.Lock()
		w.timer = nil
		w.pendingMu.Unlock()
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
	w := &e.post.walk
	w.running.Lock()
	defer w.running.Unlock()
	w.pendingMu.Lock()
	addrs := w.order
	w.order = nil
	clear(w.pending)
	if len(addrs) > 0 {
		w.last = time.Now()
	}
	w.pendingMu.Unlock()
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
	w := &e.post.walk
	w.pendingMu.Lock()
	if w.timer != nil {
		w.timer.Stop() // walkNow below takes its addresses
		w.timer = nil
	}
	w.addLocked(queued)
	w.pendingMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.walkNow(ctx)
}
