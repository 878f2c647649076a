package engine

import (
	"net/netip"
	"sync"

	"github.com/sipsentry/sipsentry/state"
)

// allowBook holds what must never be banned beyond the static allows of
// the settings: the host's own addresses and the AMI peer (never), the
// learned and seeded push servers (push) and the operators' allows
// (manual). With the static allows, push and manual are the desired
// content of the kernel allow set (Entries).
type allowBook struct {
	// setMu serialises each change of the book with the kernel allow-set
	// write that goes with it, so that a Replace (Start, Reload) never
	// runs between the two and loses an entry.
	setMu    sync.Mutex
	allowsMu sync.RWMutex // guards never, push and manual
	never    map[netip.Addr]string
	push     map[netip.Addr]allowInfo
	manual   map[netip.Prefix]manualAllow
}

type allowInfo struct {
	until int64 // UnixNano; 0 permanent
	how   string
	last  int64 // last refresh (UnixNano)
	// evidence is why it was learned (few entries: push servers).
	evidence *state.PushEvidence
}

// manualAllow is an operator's allow (AllowManual).
type manualAllow struct {
	until   int64 // UnixNano; 0 permanent
	since   int64 // UnixNano
	comment string
	uid     int
}

func (b *allowBook) init() {
	b.never = map[netip.Addr]string{}
	b.push = map[netip.Addr]allowInfo{}
	b.manual = map[netip.Prefix]manualAllow{}
}

// isNever reports whether a is on the never list (own address, AMI peer).
func (b *allowBook) isNever(a netip.Addr) bool {
	b.allowsMu.RLock()
	defer b.allowsMu.RUnlock()
	_, ok := b.never[a]
	return ok
}

// neverReason is why the book forbids banning a, or "".
func (b *allowBook) neverReason(a netip.Addr, now int64) string {
	b.allowsMu.RLock()
	defer b.allowsMu.RUnlock()
	if why, ok := b.never[a]; ok {
		return why
	}
	if al, ok := b.push[a]; ok && (al.until == 0 || al.until > now) {
		return "learned push server (" + al.how + ")"
	}
	for p, m := range b.manual {
		if (m.until == 0 || m.until > now) && p.Contains(a) {
			return "manual allow " + p.String()
		}
	}
	return ""
}

// pushInfo returns a's learned or seeded allow.
func (b *allowBook) pushInfo(a netip.Addr) (allowInfo, bool) {
	b.allowsMu.RLock()
	defer b.allowsMu.RUnlock()
	al, ok := b.push[a]
	return al, ok
}

func (b *allowBook) setPush(a netip.Addr, al allowInfo) {
	b.allowsMu.Lock()
	b.push[a] = al
	b.allowsMu.Unlock()
}

// countPush counts the unexpired learned and seeded allows.
func (b *allowBook) countPush(now int64) int {
	b.allowsMu.RLock()
	defer b.allowsMu.RUnlock()
	n := 0
	for _, al := range b.push {
		if al.until == 0 || al.until > now {
			n++
		}
	}
	return n
}

// expire forgets the push allows that ended (the kernel expires its own).
func (b *allowBook) expire(now int64) {
	b.allowsMu.Lock()
	defer b.allowsMu.Unlock()
	for a, al := range b.push {
		if al.until != 0 && al.until <= now {
			delete(b.push, a)
		}
	}
	for p, m := range b.manual {
		if m.until != 0 && m.until <= now {
			delete(b.manual, p)
		}
	}
}
