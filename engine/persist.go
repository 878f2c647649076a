package engine

import (
	"context"
	"sync"

	"github.com/sipsentry/sipsentry/state"
)

// stateWriter is persistence: the ban, lift, allow and flag rows decided
// since the last flush wait here, and Flush writes them with the source
// table's rows in one transaction (one fsync per batch, not per event).
type stateWriter struct {
	pendingMu sync.Mutex // guards pending
	pending   state.Batch
	flushMu   sync.Mutex // serialises Flush; guards retry
	retry     *state.Batch
}

// queue adds rows to the next batch.
func (w *stateWriter) queue(add func(b *state.Batch)) {
	w.pendingMu.Lock()
	add(&w.pending)
	w.pendingMu.Unlock()
}

// Flush writes everything pending (every changed source's row, evicted
// sources' rows, the event log, bans, allows, flags) in one transaction:
// after it the DB is complete. Close, Sync, the end of Run and the
// operator's commands use it; Run's ticker uses flushBudgeted.
func (e *Engine) Flush(ctx context.Context) error { return e.flush(ctx, false) }

// flushBudgeted is Run's periodic flush: like Flush, except that source
// rows are paced by the source-row budget (srcRowRate, rowbudget.go); the
// rest waits, oldest change first, for the next flushes. Bans, lifts,
// allows and flags are never held back.
func (e *Engine) flushBudgeted(ctx context.Context) error { return e.flush(ctx, true) }

func (e *Engine) flush(ctx context.Context, budgeted bool) error {
	w := &e.writer
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	b := w.retry
	w.retry = nil
	if b == nil {
		b = &state.Batch{}
	}
	e.sources.takeRows(b, budgeted, e.now().UnixNano())
	w.pendingMu.Lock()
	p := w.pending
	w.pending = state.Batch{}
	w.pendingMu.Unlock()
	b.Bans = append(b.Bans, p.Bans...)
	b.Lifts = append(b.Lifts, p.Lifts...)
	b.Allows = append(b.Allows, p.Allows...)
	b.Unallow = append(b.Unallow, p.Unallow...)
	b.Flags = append(b.Flags, p.Flags...)
	if e.d.Store == nil || b.Empty() {
		return nil
	}
	if err := e.apply(ctx, b); err != nil {
		// Keep it for the next tick; the event log is the first thing to go.
		if len(b.Events) > maxPendingEvents {
			e.droppedWrites.Add(uint64(len(b.Events)))
			b.Events = nil
		}
		if len(b.Sources) > 4*maxPendingSrc {
			// A DB that keeps failing (disk full) must not grow memory:
			// aggregates stay in memory, their rows are rewritten when the
			// sources change again.
			e.sources.droppedRows.Add(uint64(len(b.Sources)))
			b.Sources = nil
		}
		w.retry = b
		return err
	}
	return nil
}

func (e *Engine) prune(ctx context.Context) {
	if e.d.Store == nil {
		return
	}
	ret := e.opts().EventRetention
	if ret <= 0 {
		return
	}
	if n, err := e.d.Store.Prune(ctx, e.now().Add(-ret), maxEventLogRows); err != nil {
		e.log.Warn("engine: pruning the event log failed", "err", err)
	} else if n > 0 {
		e.log.Debug("engine: event log pruned", "rows", n)
	}
}
