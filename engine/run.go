package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// forgetAfter is how long after a ban ended its offence count still
// escalates the next ban in memory: max(max_ban_time, event_retention).
func (e *Engine) forgetAfter() time.Duration {
	return max(e.opts().MaxBanTime, e.opts().EventRetention, e.opts().BanTime)
}

// Start restores unexpired bans and allows (learned and static) into the
// kernel (bulk adds: bans in chunks of restoreChunk, streamed from the
// database), and seeds the push hosts. Call it once,
// after the firewall is up and before the first Handle.
func (e *Engine) Start(ctx context.Context) error {
	now := e.now()
	nowN := now.UnixNano()
	var allowEntries []firewall.Entry
	var errs []error
	restored := 0 // bans handed to the kernel

	if st := e.d.Store; st != nil {
		st.Now = e.now
		ms, err := st.MaxSession(ctx)
		if err != nil {
			return err
		}
		e.sources.tableMu.Lock()
		e.sources.nextSession = max(e.sources.nextSession, ms)
		e.sources.tableMu.Unlock()

		// Longest-running bans first, so that if more are stored than the
		// set holds (ban_maxelem lowered), the ones left out end soonest.
		// Streamed in chunks into the kernel: building every row and every
		// set entry first made a 100k-ban restore peak at ~150 MB of heap.
		maxElem := e.opts().BanMaxElem
		chunk := make([]firewall.Entry, 0, restoreChunk)
		var addErr error
		flush := func() {
			if len(chunk) > 0 && addErr == nil {
				if err := e.fw.Add(ctx, firewall.SetBan, chunk...); err != nil {
					addErr = err
				} else {
					restored += len(chunk)
				}
			}
			chunk = chunk[:0]
		}
		err = st.EachBan(ctx, now.Add(-e.forgetAfter()), func(b state.Ban) error {
			a := b.Addr.Unmap()
			bi := banInfo{until: b.Until.UnixNano(), offences: int32(b.Offences), monitor: b.Monitor}
			e.bans.bansMu.Lock()
			if bi.until > nowN && !b.Monitor && e.opts().Enforce {
				if why := e.neverBan(a); why != "" {
					e.log.Warn("engine: not restoring a stored ban", "addr", a, "refused_because", why)
					bi.until = nowN
				} else if e.bans.active >= maxElem {
					bi.until = nowN
					e.fullRefusals.Add(1)
				} else {
					bi.active = true
					e.bans.active++
					chunk = append(chunk, firewall.Entry{Prefix: prefixOf(a), Timeout: b.Until.Sub(now),
						Comment: sanitize("sipsentry: "+b.Reason, 200)})
				}
			}
			e.bans.byAddr[keyOf(a)] = bi
			e.bans.bansMu.Unlock()
			if len(chunk) == cap(chunk) {
				flush()
			}
			return nil
		})
		flush()
		if err != nil {
			return err
		}
		if n := e.fullRefusals.Load(); n > 0 {
			e.log.Warn("engine: stored bans left out: the ban set is full; raise firewall.ban_maxelem", "left_out", n, "max", maxElem)
		}
		if addErr != nil {
			// A full set must not stop the daemon: what fit protects.
			e.log.Error("engine: restoring bans failed", "restored", restored, "err", addErr)
			if !errors.Is(addErr, firewall.ErrSetFull) {
				errs = append(errs, fmt.Errorf("engine: restoring bans (%d restored before the error): %w", restored, addErr))
			}
		}

		allows, err := st.LearnedAllows(ctx)
		if err != nil {
			return err
		}
		e.allows.allowsMu.Lock()
		for _, al := range allows {
			if al.How == state.HowStatic || !al.Prefix.IsSingleIP() {
				continue // static allows come from the config, below
			}
			var ttl time.Duration
			if !al.Until.IsZero() {
				ttl = al.Until.Sub(now)
			}
			a := al.Prefix.Addr().Unmap()
			e.allows.push[a] = allowInfo{until: ns(al.Until), how: al.How, last: ns(al.LastSeen)}
			allowEntries = append(allowEntries, firewall.Entry{Prefix: al.Prefix, Timeout: ttl, Comment: "sipsentry: push " + al.How})
		}
		e.allows.allowsMu.Unlock()

		// The config is the truth for static allows: rewrite their rows.
		var b state.Batch
		for _, al := range allows {
			if al.How == state.HowStatic {
				b.Unallow = append(b.Unallow, al.Prefix)
			}
		}
		for _, p := range e.opts().StaticAllows {
			b.Allows = append(b.Allows, state.Allow{Prefix: p, PushEvidence: state.PushEvidence{How: state.HowStatic, FirstSeen: now, LastSeen: now}})
		}
		if err := st.Apply(ctx, &b); err != nil {
			return err
		}
	}
	for _, p := range e.opts().StaticAllows {
		allowEntries = append(allowEntries, firewall.Entry{Prefix: p, Comment: "sipsentry: static allow"})
	}

	if len(allowEntries) > 0 {
		if err := e.fw.Add(ctx, firewall.SetAllow, allowEntries...); err != nil {
			errs = append(errs, fmt.Errorf("engine: restoring %d allow entries: %w", len(allowEntries), err))
		}
	}
	e.log.Info("engine: state restored", "bans", restored, "allows", len(allowEntries), "geo_mode", e.opts().GeoMode, "enforce", e.opts().Enforce)
	// Bounded: an unreachable resolver must not hold the first event back.
	sctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	if err := e.Seed(sctx); err != nil {
		e.log.Warn("engine: push host seeding failed; will retry at push.reseed", "err", err)
	}
	return errors.Join(errs...)
}

// restoreChunk is how many bans Start hands the kernel per bulk add: large
// enough that 100k bans are a few dozen adds, small enough that the entries
// and the backend's add script stay well under a megabyte.
const restoreChunk = 4096

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Run does the background work until ctx ends: batched DB writes (every
// 100 ms), push-server examination, conntrack flush and hang-up after bans,
// expiry and eviction, event-log pruning and push-host reseeding. On return
// it has flushed what was pending. It leaves the firewall as it is.
func (e *Engine) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("engine: Run called twice")
	}
	defer e.running.Store(false)
	var wg sync.WaitGroup
	workers := func(n int, f func()) {
		for range n {
			wg.Add(1)
			go func() { defer wg.Done(); f() }()
		}
	}
	workers(2, func() { e.runPushLearner(ctx) })
	workers(2, func() { e.runPostBan(ctx) })

	flush := time.NewTicker(flushInterval)
	sweep := time.NewTicker(sweepInterval)
	prune := time.NewTicker(pruneInterval)
	reseedEvery := e.opts().Push.Reseed
	if reseedEvery <= 0 {
		reseedEvery = 24 * time.Hour
	}
	reseed := time.NewTicker(reseedEvery)
	defer flush.Stop()
	defer sweep.Stop()
	defer prune.Stop()
	defer reseed.Stop()
	e.prune(ctx)
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			e.drainQueues()
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
			err := e.Flush(fctx)
			cancel()
			return err
		case <-flush.C:
			if err := e.Flush(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("engine: writing state failed; will retry", "err", err)
			}
		case <-sweep.C:
			e.Sweep()
		case <-prune.C:
			e.prune(ctx)
		case <-reseed.C:
			if err := e.Seed(ctx); err != nil {
				e.log.Warn("engine: push host reseeding failed", "err", err)
			}
		}
	}
}

// drainQueues releases Sync waiters for work that will not run any more;
// the flows of addresses still queued for post-ban work are flushed in the
// final conntrack walk.
func (e *Engine) drainQueues() {
	var queued []netip.Addr
	for {
		select {
		case c := <-e.push.queue:
			e.finish(c.addr)
		case f := <-e.post.queue:
			queued = append(queued, f.addr)
			e.work.done()
		default:
			e.finishWalks(queued)
			return
		}
	}
}

// Sweep expires bans and allows in memory (the kernel expires its own
// entries) and evicts sources idle for longer than every window. Run calls
// it every few seconds; tests call it after moving the clock.
func (e *Engine) Sweep() {
	now := e.now()
	nowN := now.UnixNano()
	forget := now.Add(-e.forgetAfter()).UnixNano()
	e.bans.expire(nowN, forget)
	e.allows.expire(nowN)
	e.push.expireFlags(nowN)
	o := e.opts()
	e.sources.evictOlderThan(now.Add(-time.Duration(max(o.findTime, o.slowFindTime))))
}

// Sync waits until the push learner and post-ban work queued so far are
// done, then flushes. It needs Run to be running (or the queues to be
// empty); replay and tests use it to get a complete DB.
func (e *Engine) Sync(ctx context.Context) error {
	if err := e.work.wait(ctx); err != nil {
		return err
	}
	e.walkNow(ctx) // the coalesced conntrack walk, without waiting for its interval
	return e.Flush(ctx)
}

// Reload takes a new configuration (SIGHUP): thresholds, ban times,
// geo_mode, push patterns and domains, static allows. Static allows are
// added to and removed from the allow set; the sources' failure rings are
// cleared when their size changes. The state DB, AMI and firewall backend
// are not reloadable here.
func (e *Engine) Reload(ctx context.Context, o Options) error {
	np, err := newSettings(o)
	if err != nil {
		return err
	}
	old := e.current.Load()
	now := e.now()
	var add []firewall.Entry
	var del []netip.Prefix
	var b state.Batch
	for _, p := range np.StaticAllows {
		if !slices.Contains(old.StaticAllows, p) {
			add = append(add, firewall.Entry{Prefix: p, Comment: "sipsentry: static allow"})
			b.Allows = append(b.Allows, state.Allow{Prefix: p, PushEvidence: state.PushEvidence{How: state.HowStatic, FirstSeen: now, LastSeen: now}})
		}
	}
	for _, p := range old.StaticAllows {
		if !slices.Contains(np.StaticAllows, p) {
			del = append(del, p)
			b.Unallow = append(b.Unallow, p)
		}
	}
	if len(add) > 0 {
		if err := e.fw.Add(ctx, firewall.SetAllow, add...); err != nil {
			return fmt.Errorf("engine: reload: adding static allows: %w", err)
		}
	}
	if len(del) > 0 {
		if err := e.fw.Delete(ctx, firewall.SetAllow, del...); err != nil {
			return fmt.Errorf("engine: reload: removing static allows: %w", err)
		}
	}
	e.sources.tableMu.Lock()
	e.current.Store(np) // under tableMu: Handle sees the new ring size with cleared rings
	e.sources.tableMu.Unlock()
	// Held would-bans (or bans) are decided again under a new mode.
	e.sources.reset(np.GeoMode != old.GeoMode || np.Enforce != old.Enforce, np.ringSize != old.ringSize)
	e.sources.evictBeyond(np.MaxSources)
	e.writer.queue(func(w *state.Batch) {
		w.Allows = append(w.Allows, b.Allows...)
		w.Unallow = append(w.Unallow, b.Unallow...)
	})
	e.log.Info("engine: configuration reloaded", "geo_mode", np.GeoMode, "enforce", np.Enforce, "max_failures", np.MaxFailures,
		"static_allows_added", len(add), "static_allows_removed", len(del))
	return nil
}
