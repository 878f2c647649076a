package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/control"
	"github.com/sipsentry/sipsentry/state"
)

// controlHandler is the control socket's view of the engine: the socket's
// requests become the engine's operator calls (the same ones the CLI makes
// offline), its records and errors become the socket's.
type controlHandler struct {
	eng *engine.Engine
	geo *geo.Geo // the country column; nil: none
	// enforce is firewall.mode = "enforce" (it changes only with a
	// restart): a ban out of the kernel is then one held back by an allow,
	// not a would-ban.
	enforce bool
	// probations lists the running push probations (nil offline: they live
	// in the daemon only).
	probations func(now time.Time) []firewall.Entry
}

var _ control.Handler = (*controlHandler)(nil)

// Ban: control.DefaultDuration asks the engine for the escalated ban time of
// the address's next offence (its d = 0).
func (h *controlHandler) Ban(ctx context.Context, a netip.Addr, d time.Duration, reason string, uid uint32) (control.BanRecord, error) {
	switch {
	case d == 0:
		return control.BanRecord{}, fmt.Errorf("%w: a manual ban needs an end (the kernel entry and the state DB row expire): give --for, e.g. 30d", control.ErrInvalid)
	case d < 0:
		d = 0
	}
	rec, err := h.eng.BanManual(ctx, a, d, reason, int(uid))
	if err != nil {
		return control.BanRecord{}, controlError(err)
	}
	return h.banRecord(rec), nil
}

func (h *controlHandler) Unban(ctx context.Context, a netip.Addr, uid uint32) error {
	return controlError(h.eng.Unban(ctx, a, int(uid)))
}

func (h *controlHandler) Allow(ctx context.Context, p netip.Prefix, d time.Duration, comment string, uid uint32) (control.AllowRecord, error) {
	rec, err := h.eng.AllowManual(ctx, p, max(d, 0), comment, int(uid))
	if err != nil {
		return control.AllowRecord{}, controlError(err)
	}
	return allowRecord(rec), nil
}

func (h *controlHandler) Disallow(ctx context.Context, p netip.Prefix, uid uint32) error {
	return controlError(h.eng.Disallow(ctx, p, int(uid)))
}

func (h *controlHandler) Bans(_ context.Context, now time.Time, each func(control.BanRecord) error) error {
	for _, b := range h.eng.Bans(now) {
		if err := each(h.banRecord(b)); err != nil {
			return err
		}
	}
	return nil
}

func (h *controlHandler) Allows(_ context.Context, now time.Time, each func(control.AllowRecord) error) error {
	for _, a := range h.eng.Allows(now) {
		if err := each(allowRecord(a)); err != nil {
			return err
		}
	}
	if h.probations != nil {
		for _, e := range h.probations(now) {
			r := control.AllowRecord{Prefix: e.Prefix, Kind: control.AllowProbation, Until: now.Add(e.Timeout),
				Comment: "push candidate: UDP SIP ports only, until its login or first failure"}
			if err := each(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (h *controlHandler) banRecord(b engine.BanRecord) control.BanRecord {
	r := control.BanRecord{Addr: b.Addr, Reason: b.Reason, Origin: b.Origin, Offence: b.Offence,
		Created: b.Since, Until: b.Until, UID: uidOf(b.UID)}
	if !b.Enforced {
		r.Monitor, r.Allowed = !h.enforce, h.enforce
	}
	if h.geo != nil {
		r.Country = h.geo.ListCountry(b.Addr)
		if r.Country == "" {
			r.Country = h.geo.MMDBCountry(b.Addr)
		}
	}
	return r
}

func allowRecord(a engine.AllowRecord) control.AllowRecord {
	r := control.AllowRecord{Prefix: a.Prefix, Kind: a.Kind, Until: a.Until, Comment: a.Comment, UID: uidOf(a.UID)}
	if a.Kind == engine.AllowStatic {
		r.Comment = "" // the kind says firewall.allow already
	}
	if ev := a.Push; ev != nil {
		r.Evidence = &control.Evidence{How: ev.How, Account: ev.Account, UserAgent: ev.UserAgent, URI: ev.URI,
			AOR: ev.AOR, PTR: ev.PTR, FirstSeen: ev.FirstSeen, LastSeen: ev.LastSeen}
	}
	return r
}

func uidOf(uid int) *uint32 {
	if uid == state.NoUID || uid < 0 {
		return nil
	}
	u := uint32(uid)
	return &u
}

// controlError gives an engine error the control socket's meaning, keeping
// its text (without the package prefix: the operator reads it).
func controlError(err error) error {
	if err == nil {
		return nil
	}
	var kind error
	switch {
	case errors.Is(err, engine.ErrNeverBan), errors.Is(err, engine.ErrStaticAllow), errors.Is(err, firewall.ErrSetFull):
		kind = control.ErrRefused
	case errors.Is(err, engine.ErrNotBanned):
		kind = control.ErrNotBanned
	case errors.Is(err, engine.ErrNotAllowed):
		kind = control.ErrNotAllowed
	case errors.Is(err, engine.ErrInvalid):
		kind = control.ErrInvalid
	default:
		return err
	}
	return operatorError{err: err, kind: kind}
}

type operatorError struct{ err, kind error }

func (e operatorError) Error() string   { return strings.TrimPrefix(e.err.Error(), "engine: ") }
func (e operatorError) Unwrap() []error { return []error{e.err, e.kind} }
