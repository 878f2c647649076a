package engine

import (
	"net/netip"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/engine/addrmap"
)

// banBook holds every ban the engine made, restored or was told to make:
// its end, its offence count (escalation), whether it is in the kernel set,
// who made it. The enforced, unexpired ones are the desired content of the
// kernel ban set (Entries).
type banBook struct {
	bansMu sync.Mutex            // guards every field below
	byAddr *addrmap.Map[banInfo] // outside the Go heap: a million under a flood
	// active counts entries with banInfo.active: in the kernel set as far
	// as the engine knows (what firewall.ban_maxelem bounds).
	active int
	// external says who made each ban the engine's rules did not: an
	// operator (uid) or another decider such as a CrowdSec decision
	// (origin). Few; kept apart so the 100k-entry map's value stays small.
	external map[addrKey]externalBan
	reasons  reasonTable
}

// banInfo stays 24 bytes (no pointers): it is the value of the ban map.
type banInfo struct {
	until    int64  // UnixNano
	since    uint32 // Unix seconds the ban was made
	offences int32
	reason   uint16 // index into banBook.reasons
	monitor  bool   // a would-ban (firewall monitor mode): never in the kernel
	active   bool   // counted in active (in the kernel set)
	manual   bool   // not the engine's rules: an operator or a remote decision (external says which)
}

// externalBan is the maker of a ban that is not the engine's own.
type externalBan struct {
	uid    int    // the operator's uid; state.NoUID for a remote decision
	origin string // state.OriginManual or e.g. "crowdsec:cscli"
}

func (b *banBook) init() {
	b.byAddr = addrmap.New[banInfo]()
	b.external = map[addrKey]externalBan{}
	b.reasons.init()
}

func unixSeconds(t time.Time) uint32 {
	s := t.Unix()
	if s < 0 {
		return 0
	}
	return uint32(min(s, 1<<32-1))
}

// counts returns the enforced bans and the unexpired would-bans.
func (b *banBook) counts(now int64) (active, wouldBans int) {
	b.bansMu.Lock()
	defer b.bansMu.Unlock()
	for _, bi := range b.byAddr.All() {
		if bi.monitor && bi.until > now {
			wouldBans++
		}
	}
	return b.active, wouldBans
}

// expire marks bans that ended as no longer in the kernel (the kernel
// expires its own entries) and forgets those that ended before forget.
func (b *banBook) expire(now, forget int64) {
	b.bansMu.Lock()
	defer b.bansMu.Unlock()
	b.byAddr.Update(func(a netip.Addr, bi *banInfo) bool {
		if bi.active && bi.until <= now {
			bi.active = false
			b.active--
		}
		if bi.until < forget {
			delete(b.external, keyOf(a))
			return true
		}
		return false
	})
}

// reasonTable interns ban reasons, so that a ban holds a 2-byte index and
// the kernel comment of each reason is built once. Reasons come from a
// small set of templates; attacker-shaped parts (an injection's suspicion)
// are sanitized and bounded, and past maxReasons new ones share index 0.
type reasonTable struct {
	text     []string // reason
	comment  []string // "sipsentry: " + reason, as the kernel set holds it
	byReason map[string]uint16
}

const maxReasons = 4096

func (t *reasonTable) init() {
	t.text = []string{"(reason kept in the state DB only)"}
	t.comment = []string{"sipsentry: ban"}
	t.byReason = map[string]uint16{}
}

// intern returns reason's index; called with bansMu held.
func (t *reasonTable) intern(reason string) uint16 {
	if i, ok := t.byReason[reason]; ok {
		return i
	}
	if len(t.text) >= maxReasons {
		return 0
	}
	i := uint16(len(t.text))
	t.text = append(t.text, reason)
	t.comment = append(t.comment, sanitize("sipsentry: "+reason, 200))
	t.byReason[reason] = i
	return i
}
