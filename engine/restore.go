package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// restoreBans reads the stored bans whose end is at or after since, in the
// store's order, through row (which puts each in memory and says whether
// it belongs in the kernel), and hands those to the ban set while the DB is
// still being read: one BulkLoad when the backend is a firewall.Loader,
// Adds of restoreChunk otherwise. Every row is read whatever the kernel
// does, because memory must hold every stored ban; after a kernel error no
// more entries are sent. restored counts the entries the kernel took,
// loadErr is the kernel's error (with any entry the backend refused as
// invalid), err the DB's. Without kernel the rows only go to memory.
func (e *Engine) restoreBans(ctx context.Context, st *state.Store, since time.Time, row func(state.Ban) (firewall.Entry, bool), kernel bool) (restored int, loadErr, err error) {
	if !kernel {
		return 0, nil, st.EachBan(ctx, since, func(b state.Ban) error { row(b); return nil })
	}
	if l, ok := e.fw.(firewall.Loader); ok {
		return restoreStreamed(ctx, l, st, since, row)
	}
	return e.restoreChunked(ctx, st, since, row)
}

// restoreStreamed feeds one BulkLoad from the DB read: rows are read, put in
// memory and sent by netlink as they come, instead of the read finishing
// before the first of ~25 `ipset restore` processes starts.
func restoreStreamed(ctx context.Context, l firewall.Loader, st *state.Store, since time.Time, row func(state.Ban) (firewall.Entry, bool)) (restored int, loadErr, err error) {
	read := false
	seq := func(yield func(firewall.Entry) bool) {
		if read {
			return // each row goes to memory once
		}
		read = true
		sending := true
		err = st.EachBan(ctx, since, func(b state.Ban) error {
			en, put := row(b)
			if put && sending && !yield(en) {
				sending = false // the load stopped on a kernel error: read on, send no more
			}
			return nil
		})
	}
	r, loadErr := l.BulkLoad(ctx, firewall.SetBan, seq)
	if !read {
		// The load failed before it read anything (e.g. the set is not
		// ours): the bans still go to memory.
		err = st.EachBan(ctx, since, func(b state.Ban) error { row(b); return nil })
	}
	if r.Invalid > 0 {
		loadErr = errors.Join(loadErr, fmt.Errorf("%d stored bans refused by the firewall (first: %w)", r.Invalid, r.First))
	}
	return r.Loaded, loadErr, err
}

// restoreChunked is the path for a backend that cannot stream: Adds of
// restoreChunk entries while the DB is read.
func (e *Engine) restoreChunked(ctx context.Context, st *state.Store, since time.Time, row func(state.Ban) (firewall.Entry, bool)) (restored int, loadErr, err error) {
	chunk := make([]firewall.Entry, 0, restoreChunk)
	flush := func() {
		if len(chunk) > 0 && loadErr == nil {
			if err := e.fw.Add(ctx, firewall.SetBan, chunk...); err != nil {
				loadErr = err
			} else {
				restored += len(chunk)
			}
		}
		chunk = chunk[:0]
	}
	err = st.EachBan(ctx, since, func(b state.Ban) error {
		if en, put := row(b); put {
			chunk = append(chunk, en)
		}
		if len(chunk) == cap(chunk) {
			flush()
		}
		return nil
	})
	flush()
	return restored, loadErr, err
}
