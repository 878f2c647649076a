package dropwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipsentry/sipsentry/dropwatch/nflog"
	"github.com/sipsentry/sipsentry/dropwatch/packet"
	"github.com/sipsentry/sipsentry/dropwatch/sip"
	"github.com/sipsentry/sipsentry/state"
)

// Store is where aggregates go (state.Store implements it).
type Store interface {
	SaveDropped(ctx context.Context, recs []state.DroppedSource) error
	PruneDropped(ctx context.Context, before time.Time, maxRows int) (int64, error)
}

// Options configure a Watcher.
type Options struct {
	// MaxSources is the table's capacity; default 100,000 (~6 MB when
	// full: the table starts at 1024 slots and doubles as sources arrive).
	MaxSources int
	// FlushEvery is how often aggregates go to the Store; default 10s.
	FlushEvery time.Duration
	// Retention: rows last seen longer ago are pruned; default 30 days.
	Retention time.Duration
	// MaxRows caps the stored sources (least recently seen pruned first);
	// default 200,000 (about 25 MB of database: 124 bytes a row).
	MaxRows int
	// Country returns a source's ISO country code ("" if unknown); asked
	// once per new source. May be nil.
	Country func(netip.Addr) string
	// Store may be nil (nothing persisted).
	Store Store
	// Probation gets the push candidates; may be nil.
	Probation *Probation
	Log       *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Watcher aggregates dropped packets. Observe is safe for concurrent use.
type Watcher struct {
	o   Options
	log *slog.Logger

	tableMu sync.Mutex // guards tab and pushStates
	tab     *table
	// pushStates are probation transitions waiting for the next flush.
	pushStates []state.DroppedSource

	packets    *prometheus.CounterVec
	counterMu  sync.Mutex // guards counters
	counters   map[[2]string]prometheus.Counter
	sipPackets prometheus.Counter
	flushNow   chan struct{} // asks Run for an early flush
	overruns   atomic.Uint64
	malformed  atomic.Uint64
	flushErrs  atomic.Uint64
}

// New builds a Watcher.
func New(o Options) *Watcher {
	if o.MaxSources <= 0 {
		o.MaxSources = 100_000
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = 10 * time.Second
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 200_000
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Watcher{o: o, log: o.Log, tab: newTable(o.MaxSources, o.Now()), counters: map[[2]string]prometheus.Counter{},
		flushNow: make(chan struct{}, 1)}
	w.packets = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipsentry_dropped_packets_total",
		Help: "Packets the firewall dropped and copied to NFLOG (the kernel rate-limits the copies), by rule (ban, geo) and source country.",
	}, []string{"reason", "country"})
	w.sipPackets = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sipsentry_dropped_sip_requests_total",
		Help: "Dropped packets that parsed as SIP requests.",
	})
	if o.Probation != nil {
		o.Probation.onState = w.pushState
	}
	return w
}

// Observe takes one dropped packet (as nflog.Run delivers it).
func (w *Watcher) Observe(d nflog.Drop) {
	now := w.o.Now()
	var req *sip.Request
	if d.Proto == packet.ProtoUDP && len(d.Payload) > 0 {
		if r, err := sip.Parse(d.Payload); err == nil {
			req = &r
		}
	}
	w.tableMu.Lock()
	cc := w.tab.observe(d.Src, now, d.Reason, &d.Packet, req, w.o.Country)
	evictedWaiting := len(w.tab.pendingEvicted)
	w.tableMu.Unlock()
	if evictedWaiting >= maxEvictedPending/2 {
		// A flood of new sources evicts faster than FlushEvery saves:
		// flush early rather than lose the evicted sources' packets.
		select {
		case w.flushNow <- struct{}{}:
		default:
		}
	}
	w.count(d.Reason, cc)
	if req == nil {
		return
	}
	w.sipPackets.Inc()
	// Only the country rule's drops can be push candidates: a banned source
	// has already failed, and probation never lifts a ban.
	if w.o.Probation != nil && d.Reason == nflog.ReasonGeo && req.Method == "REGISTER" {
		country := ""
		if cc != [2]byte{} {
			country = string(cc[:])
		}
		w.o.Probation.Consider(d.Src, *req, country)
	}
}

func (w *Watcher) count(reason string, cc [2]byte) {
	k := [2]string{reason, ""}
	if cc != [2]byte{} {
		k[1] = string(cc[:])
	}
	w.counterMu.Lock()
	c, ok := w.counters[k]
	if !ok {
		c = w.packets.WithLabelValues(k[0], k[1])
		w.counters[k] = c
	}
	w.counterMu.Unlock()
	c.Inc()
}

// pushState records a probation transition for the next flush.
func (w *Watcher) pushState(a netip.Addr, st string, at time.Time) {
	w.tableMu.Lock()
	defer w.tableMu.Unlock()
	if len(w.pushStates) < maxEvictedPending {
		w.pushStates = append(w.pushStates, state.DroppedSource{Addr: a, FirstSeen: at, LastSeen: at, Push: st, PushAt: at})
	}
}

// Source returns a's aggregate in memory (Packets: those not yet flushed).
func (w *Watcher) Source(a netip.Addr) (state.DroppedSource, bool) {
	w.tableMu.Lock()
	defer w.tableMu.Unlock()
	return w.tab.get(a)
}

// Stats are the Watcher's counters.
type Stats struct {
	Sources        int    // in the table
	Evicted        uint64 // sources evicted to make room
	EvictedUnsaved uint64 // evictions that lost unsaved packets
	UAOverflow     uint64 // User-Agents not kept (too many distinct)
	Overruns       uint64 // times the kernel reported lost NFLOG copies
	Malformed      uint64 // copies that did not decode as IP
	FlushErrors    uint64
}

func (w *Watcher) Stats() Stats {
	w.tableMu.Lock()
	defer w.tableMu.Unlock()
	return Stats{Sources: w.tab.len(), Evicted: w.tab.evicted, EvictedUnsaved: w.tab.evictedUnsaved, UAOverflow: w.tab.uaOverflow,
		Overruns: w.overruns.Load(), Malformed: w.malformed.Load(), FlushErrors: w.flushErrs.Load()}
}

// flushChunk is how many sources one Flush transaction writes.
const flushChunk = 4096

// Flush writes every changed aggregate to the Store, flushChunk sources per
// transaction.
func (w *Watcher) Flush(ctx context.Context) error {
	for {
		w.tableMu.Lock()
		recs, done := w.tab.drain(flushChunk)
		if done {
			recs = append(recs, w.pushStates...)
			w.pushStates = nil
		}
		w.tableMu.Unlock()
		if w.o.Store != nil && len(recs) > 0 {
			if err := w.o.Store.SaveDropped(ctx, recs); err != nil {
				w.flushErrs.Add(1)
				// Keep the deltas for the next flush, as far as the
				// evicted-record budget allows (the rest is counted).
				w.tableMu.Lock()
				w.tab.requeue(recs)
				w.tableMu.Unlock()
				return fmt.Errorf("dropwatch: saving %d dropped sources: %w", len(recs), err)
			}
		}
		if done {
			return nil
		}
	}
}

// Run reads the NFLOG group (opts.Group, in opts.NetNS) and flushes every
// FlushEvery until ctx ends; the last flush happens on the way out.
func (w *Watcher) Run(ctx context.Context, opts nflog.Options) error {
	opts.Overrun = func() { w.overruns.Add(1) }
	opts.Malformed = func(error) { w.malformed.Add(1) }
	if opts.Log == nil {
		opts.Log = w.log
	}
	readErr := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { readErr <- nflog.Run(rctx, opts, w.Observe) }()
	if w.o.Probation != nil {
		go w.o.Probation.Run(rctx)
	}
	err := w.maintain(ctx, readErr)
	cancel()
	return err
}

// maintain flushes and prunes until ctx ends or the reader stops
// (readErr), then flushes a last time.
func (w *Watcher) maintain(ctx context.Context, readErr <-chan error) error {
	t := time.NewTicker(w.o.FlushEvery)
	defer t.Stop()
	// Pruned by age every 10 minutes, and by count as soon as a quarter of
	// MaxRows new sources were seen since the last prune: the table then
	// never holds much more than 1.25 x MaxRows rows, however fast spoofed
	// sources arrive.
	prune := time.NewTicker(10 * time.Minute)
	var prunedAt uint64 // table.inserted at the last prune
	pruneNow := func() {
		if w.o.Store == nil {
			return
		}
		w.tableMu.Lock()
		prunedAt = w.tab.inserted
		w.tableMu.Unlock()
		if _, err := w.o.Store.PruneDropped(ctx, w.o.Now().Add(-w.o.Retention), w.o.MaxRows); err != nil {
			w.log.Warn("dropwatch: prune failed", "err", err)
		}
	}
	newSincePrune := func() uint64 {
		w.tableMu.Lock()
		defer w.tableMu.Unlock()
		return w.tab.inserted - prunedAt
	}
	defer prune.Stop()
	final := func() {
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer fcancel()
		if err := w.Flush(fctx); err != nil {
			w.log.Error("dropwatch: final flush failed", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			if readErr != nil {
				<-readErr // the reader ends with ctx
			}
			final()
			return nil
		case err := <-readErr:
			final()
			if ctx.Err() != nil {
				return nil // the reader saw the cancellation first
			}
			if err == nil {
				err = errors.New("dropwatch: NFLOG reader stopped")
			}
			return err
		case <-t.C:
			if err := w.Flush(ctx); err != nil {
				w.log.Warn("dropwatch: flush failed; the aggregates stay in memory until the next", "err", err)
			}
			if newSincePrune() >= uint64(w.o.MaxRows/4) {
				pruneNow()
			}
		case <-w.flushNow:
			if err := w.Flush(ctx); err != nil {
				w.log.Warn("dropwatch: flush failed; the aggregates stay in memory until the next", "err", err)
			}
			if newSincePrune() >= uint64(w.o.MaxRows/4) {
				pruneNow()
			}
		case <-prune.C:
			pruneNow()
		}
	}
}

var (
	descDroppedSources = prometheus.NewDesc("sipsentry_dropped_sources",
		"Sources with a dropped-packet aggregate in memory.", nil, nil)
	descDroppedEvicted = prometheus.NewDesc("sipsentry_dropped_sources_evicted_total",
		"Dropped-packet aggregates evicted to make room (least recently seen first).", nil, nil)
	descNFLOGOverruns = prometheus.NewDesc("sipsentry_nflog_overruns_total",
		"Times the kernel reported NFLOG copies lost because sipsentry read too slowly.", nil, nil)
	descDroppedUnsaved = prometheus.NewDesc("sipsentry_dropped_sources_unsaved_total",
		"Dropped-packet aggregates lost before reaching the state DB (evicted or failed saves beyond the pending budget).", nil, nil)
	descDroppedFlushErrors = prometheus.NewDesc("sipsentry_dropped_flush_errors_total",
		"Failed saves of dropped-packet aggregates to the state DB.", nil, nil)
	descNFLOGMalformed = prometheus.NewDesc("sipsentry_nflog_malformed_total",
		"NFLOG copies that did not decode as an IP packet.", nil, nil)
)

type statsCollector struct{ w *Watcher }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDroppedSources, descDroppedEvicted, descNFLOGOverruns,
		descDroppedUnsaved, descDroppedFlushErrors, descNFLOGMalformed} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.w.Stats()
	ch <- prometheus.MustNewConstMetric(descDroppedSources, prometheus.GaugeValue, float64(s.Sources))
	ch <- prometheus.MustNewConstMetric(descDroppedEvicted, prometheus.CounterValue, float64(s.Evicted))
	ch <- prometheus.MustNewConstMetric(descNFLOGOverruns, prometheus.CounterValue, float64(s.Overruns))
	ch <- prometheus.MustNewConstMetric(descDroppedUnsaved, prometheus.CounterValue, float64(s.EvictedUnsaved))
	ch <- prometheus.MustNewConstMetric(descDroppedFlushErrors, prometheus.CounterValue, float64(s.FlushErrors))
	ch <- prometheus.MustNewConstMetric(descNFLOGMalformed, prometheus.CounterValue, float64(s.Malformed))
}

// Collectors are the Watcher's (and its Probation's) metrics, for the
// daemon's registry.
func (w *Watcher) Collectors() []prometheus.Collector {
	cs := []prometheus.Collector{w.packets, w.sipPackets, statsCollector{w}}
	if w.o.Probation != nil {
		cs = append(cs, w.o.Probation.Collectors()...)
	}
	return cs
}
