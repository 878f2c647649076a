package iptables

import (
	"context"
	"fmt"
	"iter"

	"github.com/sipsentry/sipsentry/firewall"
)

var _ firewall.Loader = (*Backend)(nil)

// BulkLoad streams seq into set over a netlink socket of its own, about a
// thousand adds per system call, while the caller is still producing the
// entries (e.g. reading the state DB): no text to format and parse, no
// process, no wait for the whole list. Present entries are refreshed. The
// set's lock is held for the whole load, so a Replace cannot swap the set
// out from under it; single adds of other sets go on.
func (b *Backend) BulkLoad(ctx context.Context, set firewall.Set, seq iter.Seq[firewall.Entry]) (firewall.BulkResult, error) {
	var r firewall.BulkResult
	if !firewall.KnownSet(set) {
		return r, fmt.Errorf("%w: unknown set %q", firewall.ErrInvalid, set)
	}
	unlock := b.lockSet(set)
	defer unlock()
	if err := b.ensureOurs(ctx, set); err != nil {
		return r, err
	}
	var c *nlConn
	var err error
	b.run.do(func() { c, err = openNLConn() })
	if err != nil {
		return r, fmt.Errorf("iptables: netlink socket for a bulk load: %w", err)
	}
	defer c.close()
	specs := map[string]setSpec{"inet": b.spec(set, "inet"), "inet6": b.spec(set, "inet6")}
	bt := c.newBatch(nlCmdAdd)
	sent := 0
	for e := range seq {
		v, err := firewall.Validate(set, e)
		if err != nil {
			r.Invalid++
			if r.First == nil {
				r.First = err
			}
			continue
		}
		if err := bt.put(specs[famOf(v.Prefix)], v); err != nil {
			return r, fmt.Errorf("iptables: bulk load into %s: %w", set, err)
		}
		sent++
		if len(bt.ops) == 0 { // a chunk went in
			r.Loaded = sent
			if err := ctx.Err(); err != nil {
				return r, err
			}
		}
	}
	if err := bt.flush(); err != nil {
		return r, fmt.Errorf("iptables: bulk load into %s: %w", set, err)
	}
	r.Loaded = sent
	return r, nil
}

var _ firewall.SetStatter = (*Backend)(nil)

// SetInfos reads each kernel set's header by netlink (the list request
// with the header-only flag): no process and no member is read, so the
// cost does not grow with the bans. Its socket is its own, so a running
// Verify does not hold it up.
func (b *Backend) SetInfos(ctx context.Context) ([]firewall.SetInfo, error) {
	b.statMu.Lock()
	defer b.statMu.Unlock()
	if b.sconn == nil {
		var err error
		b.run.do(func() { b.sconn, err = openNLConn() })
		if err != nil {
			return nil, fmt.Errorf("iptables: netlink socket: %w", err)
		}
		b.sconn.buf = make([]byte, 64<<10)
	}
	var out []firewall.SetInfo
	for _, fam := range families {
		for _, set := range firewall.Sets {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s := b.spec(set, fam)
			k, err := b.sconn.dumpHeader(s.name)
			if err != nil {
				return nil, err
			}
			if !k.exists {
				continue
			}
			out = append(out, firewall.SetInfo{Set: set, Family: fam, Entries: k.header.Entries, MaxElem: k.header.MaxElem, Memory: k.header.Memory})
		}
	}
	return out, nil
}
