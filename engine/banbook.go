package engine

import (
	"sync"
)

// banBook holds every ban the engine made or restored: its end, its
// offence count (escalation), whether it is in the kernel set. The
// enforced, unexpired ones are the desired content of the kernel ban set.
type banBook struct {
	bansMu sync.Mutex // guards byAddr and active
	byAddr map[addrKey]banInfo
	// active counts entries with banInfo.active: in the kernel set as far
	// as the engine knows (what firewall.ban_maxelem bounds).
	active int
}

// banInfo stays 16 bytes (no pointers): it is the value of the ban map.
type banInfo struct {
	until    int64 // UnixNano
	offences int32
	monitor  bool
	active   bool // counted in active (in the kernel set)
}

func (b *banBook) init() { b.byAddr = map[addrKey]banInfo{} }

// counts returns the enforced bans and the unexpired would-bans.
func (b *banBook) counts(now int64) (active, wouldBans int) {
	b.bansMu.Lock()
	defer b.bansMu.Unlock()
	for _, bi := range b.byAddr {
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
	for k, bi := range b.byAddr {
		if bi.active && bi.until <= now {
			bi.active = false
			b.active--
			b.byAddr[k] = bi
		}
		if bi.until < forget {
			delete(b.byAddr, k)
		}
	}
}
