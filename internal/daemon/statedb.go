package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// openState opens the state DB after checking it (quick_check), before
// anything touches the kernel. A corrupt file is moved aside (named in the
// log) and a fresh DB is opened: rebuilt then tells Run to take the
// kernel's current sets as the truth (adoptKernelSets) before the engine
// restores from the DB. Never a crash loop on a bad file, never a silent run
// on one.
func (d *daemon) openState(ctx context.Context) (rebuilt bool, err error) {
	path := state.Path(d.cfg.StateDir)
	cerr := state.Check(ctx, path)
	if cerr != nil && !errors.Is(cerr, state.ErrCorrupt) {
		return false, fmt.Errorf("run: %w (check state_dir's permissions and disk)", cerr)
	}
	if cerr == nil {
		d.store, err = state.Open(path)
		if err == nil {
			return false, nil
		}
		// Opening writes the schema: damage quick_check's read-only pass
		// could not see shows here.
		if cerr = state.Check(ctx, path); !errors.Is(cerr, state.ErrCorrupt) {
			return false, err
		}
	}
	aside, err := state.MoveAside(path, time.Now())
	if err != nil {
		return false, fmt.Errorf("run: %w; the state DB is corrupt (%v): move it away by hand (mv %s %s.corrupt) and start again", err, cerr, path, path)
	}
	d.log.Error("run: the state DB is corrupt; moved it aside and starting with a fresh one, taking the kernel's current bans and allows as the truth",
		"db", path, "moved_to", aside, "err", cerr)
	if d.store, err = state.Open(path); err != nil {
		return false, err
	}
	return true, nil
}

// adoptKernelSets reads the kernel's ban and allow sets (before the
// firewall is brought up, so nothing has changed them) into the fresh DB,
// from which the engine restores them like any stored ban.
func (d *daemon) adoptKernelSets(ctx context.Context) {
	read := func(set firewall.Set) []state.KernelEntry {
		es, err := d.fw.List(ctx, set)
		if err != nil {
			d.log.Warn("run: cannot read the kernel's set to rebuild the state DB; it starts without it", "set", set, "err", err)
			return nil
		}
		out := make([]state.KernelEntry, len(es))
		for i, e := range es {
			out[i] = state.KernelEntry{Prefix: e.Prefix, Timeout: e.Timeout}
		}
		return out
	}
	bans, allows := read(firewall.SetBan), read(firewall.SetAllow)
	nb, na, err := d.store.AdoptKernel(ctx, bans, allows)
	if err != nil {
		d.log.Error("run: writing the kernel's sets into the fresh state DB failed; the kernel keeps them until they expire", "err", err)
		return
	}
	d.log.Warn("run: state DB rebuilt from the kernel", "bans", nb, "learned_allows", na, "db", d.store.Path())
}
