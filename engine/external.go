package engine

import (
	"context"
	"net/netip"
	"time"
)

// BanFor bans a on behalf of another part of sipsentry that found the
// evidence itself (dropwatch: a failure during a push probation). The
// engine's own rules apply exactly as for a ban from an event: the
// never-ban list, escalation, firewall.mode; origin "engine".
func (e *Engine) BanFor(ctx context.Context, a netip.Addr, reason string) error {
	if !a.IsValid() {
		return ErrInvalid
	}
	_, err := e.banWith(ctx, banRequest{addr: a.Unmap(), reason: sanitize(reason, 100), now: e.now(), start: time.Now()})
	return err
}
