package control

import (
	"context"
	"net/netip"
	"time"
)

// Handler is what the server calls: the daemon implements it over its
// engine, and `sipsentry ban` without a daemon implements it over the same
// engine opened offline. uid is the operator's, from the kernel (or, for
// the CLI's own offline handler, the process's own uid).
//
// Errors wrap ErrRefused (with the reason in the text), ErrNotBanned,
// ErrNotAllowed or ErrInvalid where they apply; anything else is reported
// as an internal error.
type Handler interface {
	// Ban bans a for d (DefaultDuration: the engine's ban time for the
	// next offence; 0: no timeout) and returns the ban as recorded.
	Ban(ctx context.Context, a netip.Addr, d time.Duration, reason string, uid uint32) (BanRecord, error)
	// Unban ends a's ban everywhere (kernel, memory, DB).
	Unban(ctx context.Context, a netip.Addr, uid uint32) error
	// Allow lets p in for d (0: no timeout) ahead of bans and countries.
	Allow(ctx context.Context, p netip.Prefix, d time.Duration, comment string, uid uint32) (AllowRecord, error)
	// Disallow removes a manual or learned allow entry.
	Disallow(ctx context.Context, p netip.Prefix, uid uint32) error
	// Bans calls each for every ban active at now (would-bans included),
	// so a listing of many bans is streamed, never copied whole; an error
	// from each ends the listing and is returned.
	Bans(ctx context.Context, now time.Time, each func(BanRecord) error) error
	// Allows calls each for every allow entry in force at now.
	Allows(ctx context.Context, now time.Time, each func(AllowRecord) error) error
}
