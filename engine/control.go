package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// The operator's API: the control socket (daemon running) and the CLI
// (daemon stopped, through OpenOffline) call these same methods, so a
// manual ban obeys the never-ban rules, is recorded with its origin and
// uid, and reaches the kernel the same way in both cases.

// Sentinel errors of the operator's API.
var (
	// ErrNeverBan: the address is on the never-ban list (loopback, the
	// host's own, the AMI peer, an allow, ...); the error's text says why.
	ErrNeverBan = errors.New("engine: never banned")
	// ErrNotBanned: Unban of an address that has no running ban.
	ErrNotBanned = errors.New("engine: not banned")
	// ErrNotAllowed: Disallow of a prefix that is not an allow of the engine.
	ErrNotAllowed = errors.New("engine: not allowed")
	// ErrStaticAllow: Disallow of a static allow; only the config removes it.
	ErrStaticAllow = errors.New("engine: static allow")
	// ErrInvalid: an address or prefix the API does not take.
	ErrInvalid = errors.New("engine: invalid request")
)

// Ban origins (BanRecord.Origin).
const (
	OriginEngine = state.OriginEngine // the engine's rules
	OriginManual = state.OriginManual // an operator (BanManual)
)

// Allow kinds (AllowRecord.Kind).
const (
	AllowStatic  = "static"  // firewall.allow in the config
	AllowLearned = "learned" // a push server learned from its login (User-Agent or PTR evidence)
	AllowSeeded  = "seeded"  // a push host from push.hosts resolved by DNS
	AllowManual  = "manual"  // an operator (AllowManual)
)

// BanRecord is one running ban (or would-ban) as the engine holds it.
type BanRecord struct {
	Addr    netip.Addr `json:"addr"`
	Reason  string     `json:"reason"`
	Origin  string     `json:"origin"` // OriginEngine | OriginManual
	UID     int        `json:"uid"`    // the operator's uid of a manual ban; -1 otherwise
	Offence int        `json:"offence"`
	Since   time.Time  `json:"since"`
	Until   time.Time  `json:"until"`
	// Enforced: in the kernel ban set. False: a would-ban (firewall
	// monitor mode), or a stored ban the engine keeps out of the kernel
	// because its address is allowed now; recorded only.
	Enforced bool `json:"enforced"`
}

// AllowRecord is one allow-set entry the engine wants.
type AllowRecord struct {
	Prefix  netip.Prefix `json:"prefix"`
	Kind    string       `json:"kind"`           // AllowStatic | AllowLearned | AllowSeeded | AllowManual
	Until   time.Time    `json:"until,omitzero"` // zero: permanent
	Comment string       `json:"comment,omitempty"`
	UID     int          `json:"uid"` // the operator's uid of a manual allow; -1 otherwise
	// Push is the evidence of a learned or seeded push server.
	Push *state.PushEvidence `json:"push,omitempty"`
}

// banRecordOf builds a's record from its book entry.
func (e *Engine) banRecordOf(a netip.Addr, bi banInfo) BanRecord {
	e.bans.bansMu.Lock()
	defer e.bans.bansMu.Unlock()
	return e.banRecordLocked(keyOf(a), bi)
}

// banRecordLocked is banRecordOf with bansMu held.
func (e *Engine) banRecordLocked(k addrKey, bi banInfo) BanRecord {
	r := BanRecord{Addr: k.addr(), Reason: e.bans.reasons.text[bi.reason], Origin: OriginEngine, UID: state.NoUID,
		Offence: int(bi.offences), Since: time.Unix(int64(bi.since), 0).UTC(), Until: time.Unix(0, bi.until).UTC(),
		Enforced: bi.active}
	if bi.manual {
		r.Origin = OriginManual
		if x, ok := e.bans.external[k]; ok {
			r.UID, r.Origin = x.uid, x.origin
		}
	}
	return r
}

// BanManual bans addr for d (0: the escalated ban time of its next
// offence) for an operator with uid. The never-ban rules apply: a refusal
// wraps ErrNeverBan and says why. The ban is written to the state DB before
// it returns; it reaches the kernel when the engine enforces (otherwise it
// is a would-ban and the record says Enforced=false). A running ban is
// never shortened by it.
func (e *Engine) BanManual(ctx context.Context, addr netip.Addr, d time.Duration, reason string, uid int) (BanRecord, error) {
	if !addr.IsValid() || addr.Zone() != "" {
		return BanRecord{}, fmt.Errorf("%w: %q is not an IP address without a zone", ErrInvalid, addr)
	}
	if d < 0 {
		return BanRecord{}, fmt.Errorf("%w: negative ban time %s", ErrInvalid, d)
	}
	why := "manual"
	if r := sanitize(reason, 100); r != "" {
		why = "manual: " + r
	}
	now := e.now()
	rec, err := e.banWith(ctx, banRequest{addr: addr.Unmap(), reason: why, now: now, start: time.Now(), manual: true, uid: uid, dur: d})
	if err != nil {
		return BanRecord{}, err
	}
	if err := e.flushBudgeted(ctx); err != nil { // the decision's row is never held back; a flood's source rows may wait
		return rec, fmt.Errorf("engine: %s is banned, but the state DB write failed (retried at the next flush): %w", rec.Addr, err)
	}
	return rec, nil
}

// Unban lifts addr's ban (or would-ban) now: from the kernel, memory and
// the state DB, so it is not restored at the next start; the address's
// offence count stays for escalation. ErrNotBanned when nothing is banned
// (neither in the engine nor in the kernel set).
func (e *Engine) Unban(ctx context.Context, addr netip.Addr, uid int) error {
	if !addr.IsValid() {
		return fmt.Errorf("%w: not an IP address", ErrInvalid)
	}
	a := addr.Unmap()
	now := e.now()
	nowN := now.UnixNano()
	bk := &e.bans
	k := keyOf(a)
	bk.bansMu.Lock()
	b, ok := bk.byAddr.Get(a)
	running := ok && b.until > nowN
	if running {
		if b.active {
			b.active = false
			bk.active--
		}
		b.until = nowN
		bk.byAddr.Set(a, b)
		delete(bk.external, k)
	}
	bk.bansMu.Unlock()
	if !running {
		// The kernel may hold what the engine does not (a ban made behind
		// its back, or by an older sipsentry's CLI).
		inKernel, err := e.fw.Contains(ctx, firewall.SetBan, a)
		if err != nil {
			return fmt.Errorf("engine: unban %s: reading the ban set: %w", a, err)
		}
		if !inKernel {
			return fmt.Errorf("%w: %s", ErrNotBanned, a)
		}
	}
	// Always, not only when the engine put it there: Delete of an absent
	// entry is no error, and a ban the kernel holds against the engine's
	// view (drift) must go too.
	if err := e.fw.Delete(ctx, firewall.SetBan, prefixOf(a)); err != nil {
		return fmt.Errorf("engine: unban %s: %w", a, err)
	}
	e.writer.queue(func(b *state.Batch) { b.Lifts = append(b.Lifts, a) })
	e.sources.release(a)
	// The windows that led to the ban go too: an operator's unban gives the
	// address a fresh start, not a re-ban (escalated) at its next failure.
	e.failures.Forget(a)
	e.log.Info("engine: unbanned", "addr", a, "uid", uid)
	e.decide(Decision{Time: now, Kind: DecisionUnban, Addr: a, Reason: fmt.Sprintf("unban by uid %d", uid)})
	if err := e.flushBudgeted(ctx); err != nil { // the decision's row is never held back; a flood's source rows may wait
		return fmt.Errorf("engine: %s is unbanned, but the state DB write failed (retried at the next flush): %w", a, err)
	}
	return nil
}

// minAllowBits refuses allows that would let a large part of the Internet
// in by mistake (a typo such as "0.0.0.0/0").
const minAllowBits4, minAllowBits6 = 8, 16

// AllowManual puts p in the allow set for d (0: permanent) for an operator
// with uid; addresses inside it are never banned while it lasts. It is
// written to the state DB before it returns.
func (e *Engine) AllowManual(ctx context.Context, p netip.Prefix, d time.Duration, comment string, uid int) (AllowRecord, error) {
	p, err := allowPrefix(p)
	if err != nil {
		return AllowRecord{}, err
	}
	if d < 0 {
		return AllowRecord{}, fmt.Errorf("%w: negative allow time %s", ErrInvalid, d)
	}
	if slices.Contains(e.opts().StaticAllows, p) {
		return AllowRecord{}, fmt.Errorf("%w: %s is a static allow (firewall.allow in %s) already", ErrInvalid, p, e.configFile())
	}
	comment = sanitize(comment, 100)
	now := e.now()
	m := manualAllow{since: now.UnixNano(), comment: comment, uid: uid}
	if d > 0 {
		m.until = now.Add(d).UnixNano()
	}
	ab := &e.allows
	ab.setMu.Lock()
	defer ab.setMu.Unlock()
	if err := e.fw.Add(ctx, firewall.SetAllow, firewall.Entry{Prefix: p, Timeout: d, Comment: manualComment(comment)}); err != nil {
		return AllowRecord{}, fmt.Errorf("engine: allow %s not made: %w", p, err)
	}
	ab.allowsMu.Lock()
	ab.manual[p] = m
	ab.allowsMu.Unlock()
	row := state.Allow{Prefix: p, PushEvidence: state.PushEvidence{How: state.HowManual, FirstSeen: now, LastSeen: now}, Comment: comment, UID: uid}
	if d > 0 {
		row.Until = now.Add(d)
	}
	e.writer.queue(func(b *state.Batch) { b.Allows = append(b.Allows, row) })
	e.log.Info("engine: allowed by an operator", "prefix", p, "for", d, "comment", comment, "uid", uid)
	rec := manualRecord(p, m)
	if err := e.flushBudgeted(ctx); err != nil { // the decision's row is never held back; a flood's source rows may wait
		return rec, fmt.Errorf("engine: %s is allowed, but the state DB write failed (retried at the next flush): %w", p, err)
	}
	return rec, nil
}

// Disallow removes a manual or learned allow from the kernel, memory and
// the state DB. A static allow is refused (ErrStaticAllow: only the config
// removes it); anything else the engine does not hold is ErrNotAllowed.
func (e *Engine) Disallow(ctx context.Context, p netip.Prefix, uid int) error {
	p, err := allowPrefix(p)
	if err != nil {
		return err
	}
	if slices.Contains(e.opts().StaticAllows, p) {
		return fmt.Errorf("%w: %s: remove it from firewall.allow in %s (then reload)", ErrStaticAllow, p, e.configFile())
	}
	ab := &e.allows
	ab.setMu.Lock()
	defer ab.setMu.Unlock()
	ab.allowsMu.Lock()
	_, manual := ab.manual[p]
	_, push := ab.push[p.Addr()]
	push = push && p.IsSingleIP()
	ab.allowsMu.Unlock()
	if !manual && !push {
		return fmt.Errorf("%w: %s is not a manual or learned allow (see `sipsentry allows`)", ErrNotAllowed, p)
	}
	if err := e.fw.Delete(ctx, firewall.SetAllow, p); err != nil {
		return fmt.Errorf("engine: disallow %s: %w", p, err)
	}
	ab.allowsMu.Lock()
	if manual {
		delete(ab.manual, p)
	} else {
		delete(ab.push, p.Addr())
	}
	ab.allowsMu.Unlock()
	e.writer.queue(func(b *state.Batch) { b.Unallow = append(b.Unallow, p) })
	e.log.Info("engine: allow removed by an operator", "prefix", p, "uid", uid)
	if err := e.flushBudgeted(ctx); err != nil { // the decision's row is never held back; a flood's source rows may wait
		return fmt.Errorf("engine: %s is disallowed, but the state DB write failed (retried at the next flush): %w", p, err)
	}
	return nil
}

func allowPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() || p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%w: %q is not a CIDR", ErrInvalid, p)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	if (p.Addr().Is4() && p.Bits() < minAllowBits4) || (p.Addr().Is6() && p.Bits() < minAllowBits6) {
		return netip.Prefix{}, fmt.Errorf("%w: %s is wider than /%d (IPv4) or /%d (IPv6): it would let a large part of the Internet in",
			ErrInvalid, p, minAllowBits4, minAllowBits6)
	}
	return p, nil
}

func (e *Engine) configFile() string {
	if f := e.opts().ConfigFile; f != "" {
		return f
	}
	return "the configuration file"
}

func manualComment(c string) string {
	if c == "" {
		return "sipsentry: manual allow"
	}
	return sanitize("sipsentry: manual allow: "+c, 200)
}

func manualRecord(p netip.Prefix, m manualAllow) AllowRecord {
	r := AllowRecord{Prefix: p, Kind: AllowManual, Comment: m.comment, UID: m.uid}
	if m.until != 0 {
		r.Until = time.Unix(0, m.until).UTC()
	}
	return r
}

// Bans lists the running bans and would-bans at now, by address.
func (e *Engine) Bans(now time.Time) []BanRecord {
	nowN := now.UnixNano()
	bk := &e.bans
	bk.bansMu.Lock()
	out := make([]BanRecord, 0, bk.active)
	for a, bi := range bk.byAddr.All() {
		if bi.until > nowN {
			out = append(out, e.banRecordLocked(keyOf(a), bi))
		}
	}
	bk.bansMu.Unlock()
	slices.SortFunc(out, func(x, y BanRecord) int { return x.Addr.Compare(y.Addr) })
	return out
}

// Allows lists the allow-set entries the engine wants at now: static,
// learned and seeded push servers (with their evidence), manual.
func (e *Engine) Allows(now time.Time) []AllowRecord {
	nowN := now.UnixNano()
	var out []AllowRecord
	for _, p := range e.opts().StaticAllows {
		out = append(out, AllowRecord{Prefix: p, Kind: AllowStatic, Comment: "firewall.allow", UID: state.NoUID})
	}
	ab := &e.allows
	ab.allowsMu.RLock()
	for a, al := range ab.push {
		if al.until != 0 && al.until <= nowN {
			continue
		}
		r := AllowRecord{Prefix: prefixOf(a), Kind: AllowLearned, UID: state.NoUID}
		if al.how == state.HowSeed {
			r.Kind = AllowSeeded
		}
		if al.until != 0 {
			r.Until = time.Unix(0, al.until).UTC()
		}
		if al.evidence != nil {
			ev := *al.evidence
			r.Push = &ev
		} else {
			r.Push = &state.PushEvidence{How: al.how}
		}
		r.Comment = pushSummary(r.Push)
		out = append(out, r)
	}
	for p, m := range ab.manual {
		if m.until == 0 || m.until > nowN {
			out = append(out, manualRecord(p, m))
		}
	}
	ab.allowsMu.RUnlock()
	slices.SortFunc(out, func(x, y AllowRecord) int {
		if c := cmp.Compare(kindOrder(x.Kind), kindOrder(y.Kind)); c != 0 {
			return c
		}
		return x.Prefix.Addr().Compare(y.Prefix.Addr())
	})
	return out
}

// pushSummary is a push allow's evidence in one line for `allows`.
func pushSummary(ev *state.PushEvidence) string {
	var parts []string
	if ev.PTR != "" {
		parts = append(parts, "PTR "+ev.PTR)
	}
	if ev.UserAgent != "" {
		parts = append(parts, "UA "+sanitize(ev.UserAgent, 80))
	}
	if ev.Account != "" {
		parts = append(parts, "account "+sanitize(ev.Account, 40))
	}
	s := "push server (" + ev.How + ")"
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	return s
}

func kindOrder(k string) int {
	switch k {
	case AllowStatic:
		return 0
	case AllowManual:
		return 1
	case AllowLearned:
		return 2
	}
	return 3
}
