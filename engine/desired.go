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
// yields nothing. The allow set's sequence is a snapshot taken when
// iteration starts (its lock is held only while copying). The ban set's
// runs under the ban book's lock: a copy would be 32 bytes a ban, 32 MB
// every check at a million bans, so the consumer must be quick (the
// verifier appends 24 bytes an entry: ~2 ms per 100k bans held up) and
// must not call the engine from its loop.
func (e *Engine) Entries(set firewall.Set) iter.Seq[firewall.Entry] {
	switch set {
	case firewall.SetBan:
		return e.banEntries
	case firewall.SetAllow:
		return e.allowEntries
	}
	return func(func(firewall.Entry) bool) {}
}

func (e *Engine) banEntries(yield func(firewall.Entry) bool) {
	now := e.now().UnixNano()
	bk := &e.bans
	bk.bansMu.Lock()
	defer bk.bansMu.Unlock()
	for a, bi := range bk.byAddr.All() {
		if bi.active && bi.until > now {
			if !yield(firewall.Entry{Prefix: prefixOf(a), Timeout: time.Duration(bi.until - now), Comment: bk.reasons.comment[bi.reason]}) {
				return
			}
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
