package dryrun

import (
	"context"
	"fmt"
	"iter"
	"net/netip"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// Verify compares the in-memory sets with want as the kernel backend
// compares the kernel (see firewall.Verifier); the "rules" are the up
// state. Repairs are recorded as "repair" operations.
func (b *Backend) Verify(_ context.Context, want firewall.Desired, repair bool) (firewall.Drift, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	b.expire(now)
	var d firewall.Drift
	for _, set := range firewall.Sets {
		ms := b.sets[set]
		seen := make(map[netip.Prefix]bool, len(ms.m))
		type famDiff struct {
			missing, changed []firewall.Entry
			extra            []netip.Prefix
		}
		diff := map[string]*famDiff{"inet": {}, "inet6": {}}
		for e := range want.Entries(set) {
			v, err := firewall.Validate(set, e)
			if err != nil {
				continue
			}
			fd := diff[firewall.Family(v.Prefix.Addr())]
			m, ok := ms.m[v.Prefix]
			switch {
			case !ok || m.expired(now):
				fd.missing = append(fd.missing, v)
			case seen[v.Prefix]:
			default:
				seen[v.Prefix] = true
				if set != firewall.SetAllowCountry && timeoutDiffers(m, v, now) {
					fd.changed = append(fd.changed, v)
				}
			}
		}
		for p, m := range ms.m {
			if !seen[p] && !m.expired(now) {
				fd := diff[firewall.Family(p.Addr())]
				fd.extra = append(fd.extra, p)
			}
		}
		for _, fam := range []string{"inet", "inet6"} {
			fd := diff[fam]
			if len(fd.missing)+len(fd.extra)+len(fd.changed) == 0 {
				continue
			}
			sfx := "-v4"
			if fam == "inet6" {
				sfx = "-v6"
			}
			o := firewall.ObjectDrift{Object: string(set) + sfx, Missing: len(fd.missing), Extra: len(fd.extra), Changed: len(fd.changed)}
			if repair {
				for _, p := range fd.extra {
					ms.del(p)
				}
				for _, e := range append(fd.missing, fd.changed...) {
					b.put(set, ms, e, now)
				}
				b.record(Op{Verb: "repair", Set: set, Entries: append(fd.missing, fd.changed...)})
				o.Repaired = true
			}
			d.Objects = append(d.Objects, o)
		}
	}
	if !b.up {
		o := firewall.ObjectDrift{Object: "chain", Missing: 1, Detail: "not up"}
		if repair {
			b.up = true
			b.record(Op{Verb: "repair", Entries: nil})
			o.Repaired = true
		}
		d.Objects = append(d.Objects, o)
	}
	return d, nil
}

func timeoutDiffers(m member, want firewall.Entry, now time.Time) bool {
	if want.Timeout <= 0 {
		return !m.expires.IsZero()
	}
	if m.expires.IsZero() {
		return true
	}
	diff := m.expires.Sub(now) - want.Timeout
	return diff > firewall.TimeoutSlack || diff < -firewall.TimeoutSlack
}

// BulkLoad adds every valid entry of seq to set (see firewall.Loader).
// The record keeps one "add" operation per 4096 entries.
func (b *Backend) BulkLoad(_ context.Context, set firewall.Set, seq iter.Seq[firewall.Entry]) (firewall.BulkResult, error) {
	var r firewall.BulkResult
	if !firewall.KnownSet(set) {
		return r, fmt.Errorf("%w: unknown set %q", firewall.ErrInvalid, set)
	}
	var batch []firewall.Entry
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if err := b.add(set, batch); err != nil {
			return err
		}
		b.record(Op{Verb: "add", Set: set, Entries: batch})
		r.Loaded += len(batch)
		batch = batch[:0]
		return nil
	}
	for e := range seq {
		v, err := firewall.Validate(set, e)
		if err != nil {
			r.Invalid++
			if r.First == nil {
				r.First = err
			}
			continue
		}
		batch = append(batch, v)
		if len(batch) == 4096 {
			if err := flush(); err != nil {
				return r, err
			}
		}
	}
	return r, flush()
}

var _ firewall.SetStatter = (*Backend)(nil)

// SetInfos is Status's set sizes.
func (b *Backend) SetInfos(ctx context.Context) ([]firewall.SetInfo, error) {
	st, err := b.Status(ctx)
	return st.Sets, err
}
