package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/state"
)

// Bans found or decided outside the engine's own rules. The engine still
// decides: its never-ban list, escalation and firewall.mode apply exactly
// as for a ban from an event.

// BanFor bans a on behalf of another part of sipsentry that found the
// evidence itself (dropwatch: a failure during a push probation); origin
// "engine".
func (e *Engine) BanFor(ctx context.Context, a netip.Addr, reason string) error {
	if !a.IsValid() {
		return ErrInvalid
	}
	_, err := e.banWith(ctx, banRequest{addr: a.Unmap(), reason: sanitize(reason, 100), now: e.now(), start: time.Now()})
	return err
}

// RemoteOriginPrefix starts the origin of every ban a remote decision made
// ("crowdsec:cscli", "crowdsec:sipsentry", …).
const RemoteOriginPrefix = "crowdsec:"

// BanRemote applies a remote decision (CrowdSec) to a single address for d,
// recorded with origin (which must start with RemoteOriginPrefix). A
// running local ban is never shortened by it, and a refusal wraps
// ErrNeverBan with the reason.
func (e *Engine) BanRemote(ctx context.Context, a netip.Addr, d time.Duration, reason, origin string) (BanRecord, error) {
	if !a.IsValid() || a.Zone() != "" || d <= 0 || !strings.HasPrefix(origin, RemoteOriginPrefix) {
		return BanRecord{}, fmt.Errorf("%w: remote ban of %v for %s from %q", ErrInvalid, a, d, origin)
	}
	// A running ban of the engine's own or an operator's stays theirs: the
	// remote decision must not take it over (its deletion would then lift
	// a local ban early).
	k := keyOf(a.Unmap())
	e.bans.bansMu.Lock()
	bi, _ := e.bans.byAddr.Get(a.Unmap())
	x, ext := e.bans.external[k]
	local := bi.until > e.now().UnixNano() && !bi.monitor && (!ext || !strings.HasPrefix(x.origin, RemoteOriginPrefix))
	var rec BanRecord
	if local {
		rec = e.banRecordLocked(k, bi)
	}
	e.bans.bansMu.Unlock()
	if local {
		return rec, nil
	}
	why := sanitize(origin+": "+reason, 100)
	return e.banWith(ctx, banRequest{addr: a.Unmap(), reason: why, now: e.now(), start: time.Now(),
		manual: true, uid: state.NoUID, dur: d, origin: sanitize(origin, 48)})
}

// UnbanRemote lifts a's ban when a remote decision made it (its origin
// starts with RemoteOriginPrefix); a ban of the engine's own or an
// operator's is left alone. It reports whether it lifted one.
func (e *Engine) UnbanRemote(ctx context.Context, a netip.Addr) (bool, error) {
	a = a.Unmap()
	k := keyOf(a)
	e.bans.bansMu.Lock()
	x, ok := e.bans.external[k]
	bi, _ := e.bans.byAddr.Get(a)
	e.bans.bansMu.Unlock()
	if !ok || !strings.HasPrefix(x.origin, RemoteOriginPrefix) || bi.until <= e.now().UnixNano() {
		return false, nil
	}
	if err := e.Unban(ctx, a, state.NoUID); err != nil {
		return false, err
	}
	return true, nil
}

// AccountsOf lists the accounts a tried, as the source's aggregate holds
// them (attacker text: escape it before handing it on); nil when the
// source is not in memory.
func (e *Engine) AccountsOf(a netip.Addr) []string {
	t := &e.sources
	t.tableMu.Lock()
	defer t.tableMu.Unlock()
	s := t.lookup(a.Unmap())
	if s == nil {
		return nil
	}
	out := make([]string, 0, len(s.src.Accounts))
	for _, ac := range s.src.Accounts {
		out = append(out, ac.Account)
	}
	return out
}
