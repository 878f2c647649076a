package engine

import (
	"iter"
	"net/netip"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// Entries is the desired content of one of the engine's kernel sets, what
// the firewall's verifier compares the kernel with:
//   - firewall.SetBan: every enforced, unexpired ban with its remaining
//     time (would-bans of monitor mode are not in it);
//   - firewall.SetAllow: the static allows of the settings (permanent),
//     the learned and seeded push servers and the manual allows, each with
//     its remaining time (0: permanent) and comment.
//
// Any other set (the allowed countries' prefixes belong to the geo lists)
// yields nothing. The sequence is a snapshot taken when iteration starts:
// the locks are held only while copying (32 bytes per ban), never
// while the consumer runs, so a verifier may call the engine from its loop.
func (e *Engine) Entries(set firewall.Set) iter.Seq[firewall.Entry] {
	switch set {
	case firewall.SetBan:
		return e.banEntries
	case firewall.SetAllow:
		return e.allowEntries
	}
	return func(func(firewall.Entry) bool) {}
}

// banSnap is one enforced ban as banEntries copies it.
type banSnap struct {
	key    addrKey
	until  int64
	reason uint16
}

func (e *Engine) banEntries(yield func(firewall.Entry) bool) {
	now := e.now().UnixNano()
	bk := &e.bans
	bk.bansMu.Lock()
	snap := make([]banSnap, 0, bk.active)
	for a, bi := range bk.byAddr.All() {
		if bi.active && bi.until > now {
			snap = append(snap, banSnap{key: keyOf(a), until: bi.until, reason: bi.reason})
		}
	}
	// The comment table only grows (intern appends), so a copy of the
	// slice header stays valid after the lock is released.
	comments := bk.reasons.comment
	bk.bansMu.Unlock()
	for _, b := range snap {
		if !yield(firewall.Entry{Prefix: prefixOf(b.key.addr()), Timeout: time.Duration(b.until - now), Comment: comments[b.reason]}) {
			return
		}
	}
}

const staticComment = "sipsentry: static allow"

func (e *Engine) allowEntries(yield func(firewall.Entry) bool) {
	now := e.now().UnixNano()
	static := e.opts().StaticAllows
	seen := make(map[netip.Prefix]bool, len(static))
	out := make([]firewall.Entry, 0, len(static))
	for _, p := range static {
		if !seen[p] {
			seen[p] = true
			out = append(out, firewall.Entry{Prefix: p, Comment: staticComment})
		}
	}
	remaining := func(until int64) (time.Duration, bool) {
		if until == 0 {
			return 0, true
		}
		return time.Duration(until - now), until > now
	}
	ab := &e.allows
	ab.allowsMu.RLock()
	for p, m := range ab.manual {
		if t, ok := remaining(m.until); ok && !seen[p] {
			seen[p] = true
			out = append(out, firewall.Entry{Prefix: p, Timeout: t, Comment: manualComment(m.comment)})
		}
	}
	for a, al := range ab.push {
		p := prefixOf(a)
		if t, ok := remaining(al.until); ok && !seen[p] {
			seen[p] = true
			out = append(out, firewall.Entry{Prefix: p, Timeout: t, Comment: pushComment(al.how, al.evidence)})
		}
	}
	ab.allowsMu.RUnlock()
	for _, en := range out {
		if !yield(en) {
			return
		}
	}
}
