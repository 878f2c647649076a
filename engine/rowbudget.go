package engine

import (
	"time"

	"github.com/sipsentry/sipsentry/state"
)

// srcRowRate is how many source rows a second Run's flushes write at most
// (issue 11: persistence of a ban burst ≤ 10 % of the daemon's CPU). Under
// a 100k-source flood at 10k events/s the daemon spends ~0.15 CPU-s a
// second (bench/flood, after the multi-row writer); 10 % is ~15 ms, and
// the bans that may not be sampled (10k a second in a burst, ~5 µs each)
// and the commits take most of it. A source upsert costs ~12 µs, so 500
// rows (6 ms) is what is left; at 1000 the writer measured 17.6 % of the
// daemon's CPU over the flood, at 500 (with 250 ms flushes) 10.4 %.
// Before the budget, a 100k-source flood rewrote every source at each of
// its events (600k rows in 60 s, 10k a second).
//
// Normal traffic (a PBX's phones, a scanner or two) changes a few sources a
// flush, far below the budget: every changed row is written at the next
// flush, as before. Over it, rows wait in the dirty list and a source that
// changes again while waiting costs nothing more (its one row carries every
// change): under a flood each source is rewritten about once per
// waiting/srcRowRate seconds instead of at every event.
const srcRowRate = 500

// rowBudget paces the budgeted flushes' source rows: at most srcRowRate in
// each second of the engine's clock, and within a second no more than its
// elapsed part plus one flush interval allows, so that a flood's rows are
// spread over the second's flushes (each ~srcRowRate/10) instead of one
// large transaction at its start. Guarded by sources.tableMu.
type rowBudget struct {
	second int64 // Unix second being spent
	used   int
}

// allowance is how many rows a flush at now (UnixNano) may write.
func (b *rowBudget) allowance(now int64) int {
	sec := now / int64(time.Second)
	if now%int64(time.Second) < 0 {
		sec--
	}
	if sec != b.second {
		b.second, b.used = sec, 0
	}
	into := now - sec*int64(time.Second)
	paced := int64(srcRowRate) * (into + int64(flushInterval)) / int64(time.Second)
	return max(0, int(min(paced, srcRowRate))-b.used)
}

func (b *rowBudget) spend(n int) { b.used += n }

// takeRows hands the writer the rows of changed and evicted sources and the
// event log, appended to b. Unbudgeted (Flush, Sync, Close), every waiting
// row goes. Budgeted (Run's ticker), at most the allowance at now: evicted
// sources' rows first, up to half of it, then the dirty list from its head
// (oldest change first), then evicted rows again with what is left. The
// evicted rows get a guaranteed share because they are the only copy of
// their source (lost, and counted in droppedRows, once maxPendingSrc of them
// wait), while a row in the table only waits; not all of it, because under
// eviction churn they arrive at the event rate and would keep the rows of
// the sources still in memory (the ones attacking now) from ever being
// written during a flood. The event log has its own sampler (eventLogRate).
func (t *sourceTable) takeRows(b *state.Batch, budgeted bool, now int64) {
	t.tableMu.Lock()
	defer t.tableMu.Unlock()
	limit := t.dirtyLen + len(t.evictedRows)
	if budgeted {
		// Rows of a batch kept for retry are written again: they count.
		limit = min(limit, max(0, t.rowPace.allowance(now)-len(b.Sources)))
	}
	start := len(b.Sources)
	t.takeEvicted(b, (limit+1)/2)
	for s := t.dirtyHead; s != nil && len(b.Sources)-start < limit; s = t.dirtyHead {
		t.unmarkDirty(s)
		b.Sources = append(b.Sources, state.SourceUpdate{Session: s.session, Source: cloneSource(&s.src)})
	}
	t.takeEvicted(b, limit-(len(b.Sources)-start))
	n := len(b.Sources) - start
	if budgeted {
		t.rowPace.spend(n)
	}
	t.rowsWritten.Add(uint64(n))
	if len(t.eventRows) > 0 {
		b.Events = append(b.Events, t.eventRows...)
		t.eventRows = make([]state.Event, 0, min(len(t.eventRows), 1024))
	}
}

// takeEvicted moves up to n evicted rows, oldest first, into b; called with
// tableMu held.
func (t *sourceTable) takeEvicted(b *state.Batch, n int) {
	n = min(n, len(t.evictedRows))
	if n <= 0 {
		return
	}
	b.Sources = append(b.Sources, t.evictedRows[:n]...)
	clear(t.evictedRows[:n]) // the batch holds them now
	if n == len(t.evictedRows) {
		t.evictedRows = t.evictedRows[:0]
		return
	}
	// Reslicing (not copying down up to maxPendingSrc rows under the lock
	// Handle waits for): append reallocates once the front is used up.
	t.evictedRows = t.evictedRows[n:]
}

// SourceRowStats is the source-row budget's lag, for the status and the
// metrics.
type SourceRowStats struct {
	// Waiting: source rows changed in memory, or of evicted sources, not
	// yet handed to the writer.
	Waiting int `json:"waiting"`
	// OldestWait is how long the oldest of them has waited (0 when none).
	OldestWait time.Duration `json:"oldest_wait"`
	// Written: source rows handed to the writer since start (its rate is
	// at most srcRowRate a second while Run's flushes are the only ones).
	Written uint64 `json:"written"`
	// Rate is srcRowRate, for the reader of the figures above.
	Rate int `json:"rate"`
}

// rowStats reads the budget's lag at now.
func (t *sourceTable) rowStats(now time.Time) SourceRowStats {
	t.tableMu.Lock()
	defer t.tableMu.Unlock()
	st := SourceRowStats{Waiting: t.dirtyLen + len(t.evictedRows), Written: t.rowsWritten.Load(), Rate: srcRowRate}
	oldest := int64(0)
	if t.dirtyHead != nil {
		oldest = t.dirtyHead.dirtyAt
	}
	if len(t.evictedRows) > 0 {
		if ls := t.evictedRows[0].Source.LastSeen; !ls.IsZero() && (oldest == 0 || ls.UnixNano() < oldest) {
			oldest = ls.UnixNano()
		}
	}
	if oldest != 0 {
		st.OldestWait = max(0, time.Duration(now.UnixNano()-oldest))
	}
	return st
}
