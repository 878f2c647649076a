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

// Start restores unexpired bans into the kernel (one bulk load fed while
// the database is read; Adds of restoreChunk for a backend that is not a
// firewall.Loader), makes the kernel allow set
// equal to the engine's (static allows from the settings, learned, seeded
// and manual allows from the database: one Replace, so an entry that is no
// longer wanted goes whatever its comment), and seeds the push hosts. Call
// it once, after the firewall is up and before the first Handle.
func (e *Engine) Start(ctx context.Context) error { return e.start(ctx, true) }

// OpenOffline builds an engine for one operator command while no daemon
// runs (`sipsentry ban` without the control socket): it loads the bans and
// allows of d.Store into memory without touching the kernel or starting
// Run's loops. Then call BanManual, Unban, AllowManual, Disallow, Bans or
// Allows (each writes the DB before it returns and reaches the kernel
// through d.Firewall) and Close. The daemon's next Start agrees with what
// was done.
func OpenOffline(ctx context.Context, o Options, d Deps) (*Engine, error) {
	if d.Store == nil {
		return nil, errors.New("engine: OpenOffline needs the state DB (Deps.Store)")
	}
	if d.Resolver == nil {
		d.Resolver = noResolver{} // an operator command learns nothing
	}
	e, err := New(o, d)
	if err != nil {
		return nil, err
	}
	if err := e.start(ctx, false); err != nil {
		return nil, err
	}
	return e, nil
}

// Close writes everything pending to the state DB (no source-row budget);
// the Store and the backend stay open (the caller owns them). For an engine
// from OpenOffline, or after Run returned.
func (e *Engine) Close(ctx context.Context) error { return e.Flush(ctx) }

// noResolver answers nothing: OpenOffline neither seeds nor learns.
type noResolver struct{}

func (noResolver) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return nil, errors.New("engine: no DNS in an offline command")
}

func (noResolver) LookupAddrs(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("engine: no DNS in an offline command")
}

// start loads the state DB into memory; with kernel, it also restores bans
// and the allow set into the kernel and seeds the push hosts.
func (e *Engine) start(ctx context.Context, kernel bool) error {
	now := e.now()
	nowN := now.UnixNano()
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

		// Allows first, so that a stored ban of an address allowed since is
		// not restored.
		allows, err := st.LearnedAllows(ctx)
		if err != nil {
			return err
		}
		e.allows.allowsMu.Lock()
		for _, al := range allows {
			switch {
			case al.How == state.HowStatic:
				continue // static allows come from the settings
			case al.How == state.HowManual:
				e.allows.manual[al.Prefix.Masked()] = manualAllow{until: ns(al.Until), since: ns(al.FirstSeen), comment: al.Comment, uid: al.UID}
			case al.Prefix.IsSingleIP():
				ev := al.PushEvidence
				e.allows.push[al.Prefix.Addr().Unmap()] = allowInfo{until: ns(al.Until), how: al.How, last: ns(al.LastSeen), evidence: &ev}
			}
		}
		e.allows.allowsMu.Unlock()

		// Longest-running bans first (the store's order), so that if more
		// are stored than the set holds (ban_maxelem lowered), the ones left
		// out end soonest. Each row goes to the kernel while the DB is read
		// (restoreBans): building every row and every set entry first made a
		// 100k-ban restore peak at ~150 MB of heap and wait for the whole read.
		maxElem := e.opts().BanMaxElem
		bk := &e.bans
		// row puts one stored ban into memory and says whether (and as what)
		// it belongs in the kernel. It never calls the backend: BulkLoad
		// holds the ban set's lock while the rows are read.
		row := func(b state.Ban) (firewall.Entry, bool) {
			a := b.Addr.Unmap()
			k := keyOf(a)
			bk.bansMu.Lock()
			defer bk.bansMu.Unlock()
			bi := banInfo{until: b.Until.UnixNano(), since: unixSeconds(b.Created), offences: int32(b.Offences),
				reason: bk.reasons.intern(b.Reason), monitor: b.Monitor, manual: b.Origin != "" && b.Origin != state.OriginEngine}
			var entry firewall.Entry
			put := false
			if bi.until > nowN && !b.Monitor && e.opts().Enforce {
				if why := e.neverBan(a); why != "" {
					// Kept as the DB has it (Bans lists it, Unban lifts it)
					// but not put in the kernel: the allow wins.
					e.log.Warn("engine: stored ban not put in the kernel", "addr", a, "refused_because", why)
				} else if bk.active >= maxElem {
					bi.until = nowN
					e.fullRefusals.Add(1)
				} else {
					bi.active = true
					bk.active++
					entry = firewall.Entry{Prefix: prefixOf(a), Timeout: b.Until.Sub(now),
						Comment: bk.reasons.comment[bi.reason]}
					put = true
				}
			}
			bk.byAddr.Set(a, bi)
			if bi.manual {
				bk.external[k] = externalBan{uid: b.UID, origin: b.Origin}
			}
			return entry, put
		}
		var addErr error
		restored, addErr, err = e.restoreBans(ctx, st, now.Add(-e.forgetAfter()), row, kernel)
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

		// Addresses that authenticated within known_for stay known across a
		// restart (forged UDP failures alone do not ban them).
		if kf := e.opts().KnownFor; kf > 0 {
			known := 0
			if err := st.Authenticated(ctx, now.Add(-kf), func(a netip.Addr, at time.Time) {
				e.failures.MarkKnown(a.Unmap(), at)
				known++
			}); err != nil {
				return err
			}
			if known > 0 {
				e.log.Info("engine: known addresses restored", "count", known, "known_for", kf)
			}
		}

		if kernel {
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
	}
	if !kernel {
		return errors.Join(errs...)
	}
	n, err := e.replaceAllowSet(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	e.log.Info("engine: state restored", "bans", restored, "allows", n, "geo_mode", e.opts().GeoMode, "enforce", e.opts().Enforce)
	// Bounded: an unreachable resolver must not hold the first event back.
	sctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	if err := e.Seed(sctx); err != nil {
		e.log.Warn("engine: push host seeding failed; will retry at push.reseed", "err", err)
	}
	return errors.Join(errs...)
}

// replaceAllowSet makes the kernel allow set equal to Entries(SetAllow) in
// one atomic Replace and returns how many entries it holds.
func (e *Engine) replaceAllowSet(ctx context.Context) (int, error) {
	e.allows.setMu.Lock()
	defer e.allows.setMu.Unlock()
	entries := slices.Collect(e.Entries(firewall.SetAllow))
	if err := e.fw.Replace(ctx, firewall.SetAllow, entries); err != nil {
		return 0, fmt.Errorf("engine: loading %d allow entries into the kernel: %w", len(entries), err)
	}
	return len(entries), nil
}

// restoreChunk is how many bans Start hands a backend that is not a
// firewall.Loader per bulk add: large
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
// 250 ms), push-server examination, conntrack flush and hang-up after bans,
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
	if e.d.Store != nil {
		workers(1, func() { e.runApplier(ctx) })
	}

	flush := time.NewTicker(flushInterval)
	challenges := time.NewTicker(time.Second) // unanswered-challenge timeouts
	defer challenges.Stop()
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
			if err := e.flushBudgeted(ctx); err != nil && ctx.Err() == nil {
				e.log.Error("engine: writing state failed; will retry", "err", err)
			}
		case <-challenges.C:
			e.tickFailures(ctx)
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
// done, then flushes everything (no source-row budget). It needs Run to be
// running (or the queues to be empty); replay and tests use it to get a
// complete DB.
func (e *Engine) Sync(ctx context.Context) error {
	if err := e.work.wait(ctx); err != nil {
		return err
	}
	e.walkNow(ctx) // the coalesced conntrack walk, without waiting for its interval
	return e.Flush(ctx)
}

// Reload takes new settings (SIGHUP): thresholds, ban times, modes, push
// patterns and domains, static allows. Invalid settings are refused with
// nothing changed. The kernel allow set is made equal to the engine's again
// (one Replace), so a static allow removed from the config leaves it
// whatever its comment; the sources' failure rings are cleared when their
// size changes. The state DB, AMI and firewall backend are not reloadable
// here.
func (e *Engine) Reload(ctx context.Context, o Options) error {
	np, err := newSettings(o)
	if err != nil {
		return err
	}
	old := e.current.Load()
	now := e.now()
	var b state.Batch
	added, removed := 0, 0
	for _, p := range np.StaticAllows {
		if !slices.Contains(old.StaticAllows, p) {
			added++
			b.Allows = append(b.Allows, state.Allow{Prefix: p, PushEvidence: state.PushEvidence{How: state.HowStatic, FirstSeen: now, LastSeen: now}})
		}
	}
	for _, p := range old.StaticAllows {
		if !slices.Contains(np.StaticAllows, p) {
			removed++
			b.Unallow = append(b.Unallow, p)
		}
	}
	if err := e.failures.SetOptions(np.failures); err != nil {
		return fmt.Errorf("engine: reload: %w", err)
	}
	e.sources.tableMu.Lock()
	e.current.Store(np)
	e.sources.tableMu.Unlock()
	// Held would-bans (or bans) are decided again under a new mode.
	e.sources.reset(np.GeoMode != old.GeoMode || np.Enforce != old.Enforce)
	e.sources.evictBeyond(np.MaxSources)
	e.writer.queue(func(w *state.Batch) {
		w.Allows = append(w.Allows, b.Allows...)
		w.Unallow = append(w.Unallow, b.Unallow...)
	})
	if _, err := e.replaceAllowSet(ctx); err != nil {
		// The new settings are in force already; the verifier repairs the
		// kernel set from Entries, so the reload itself stands.
		e.log.Error("engine: reload: the kernel allow set was not replaced; the firewall verifier repairs it", "err", err)
	}
	e.log.Info("engine: configuration reloaded", "geo_mode", np.GeoMode, "enforce", np.Enforce, "max_failures", np.MaxFailures,
		"static_allows_added", added, "static_allows_removed", removed)
	return nil
}
