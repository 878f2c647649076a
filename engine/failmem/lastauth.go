package failmem

// The time of an address's last successful authentication is kept in 16
// bits (record.lastAuth): in units of authUnit seconds, the smallest that
// fits known_for into authSpan units (1 s up to 4.5 h; 37 s at the default
// 7 days), on a circle of authMod units. An address is known while the
// units between its login and now are at most ceil(known_for/unit): known
// for at least known_for, at most two units longer (74 s at 7 days; exact
// to the second for known_for up to 4.5 h).
//
// The circle wraps after authMod units (4 × known_for or more), so a login
// must be forgotten before it could look recent again: sweepAuth clears
// every lastAuth older than authSpan units, visiting the whole table once
// every authSweepUnits units (a quarter of known_for), on the observations'
// clock (Observe and MarkKnown; never Tick's, which may be another clock);
// after a gap with no observation longer than authSpan units every login is
// cleared.
// An entry the sweep misses (moved behind its cursor by a growth or a
// deletion) is met on the next pass; it would take ten missed passes in a
// row for a cleared-by-now login to alias to a recent one.
const (
	authSpan       = 1 << 14 // known_for in units, at most
	authMod        = 1<<16 - 1
	authFuture     = 1 << 13 // circle differences this close below authMod are a login ahead of now (a clock step back)
	authSweepUnits = 1 << 12 // one sweep pass takes this many units
)

// authUnitFor returns the unit for known_for kf; with kf 0 (no address is
// known by a login) logins are still kept, in the default's unit, so a
// reload that turns known_for on finds them.
func authUnitFor(kf int64) int64 {
	if kf <= 0 {
		kf = int64(DefaultOptions().KnownFor.Seconds())
	}
	return max(ceilDiv(kf, authSpan), 1)
}

// encodeAuth is t (Unix seconds) on the circle; never 0 (never).
func encodeAuth(t, unit int64) uint16 {
	return uint16(max(t, 0)/unit%authMod) + 1
}

// authAge is the units between the login e and now: 0 for a login ahead of
// now, -1 for none.
func authAge(e uint16, now, unit int64) int64 { return authAgeEnc(e, encodeAuth(now, unit)) }

// authAgeEnc is authAge with now encoded (once for many records: no
// division per record).
func authAgeEnc(e, now uint16) int64 {
	if e == 0 {
		return -1
	}
	d := int64(now) - int64(e)
	if d < 0 {
		d += authMod
	}
	if d >= authMod-authFuture {
		return 0
	}
	return d
}

// knownAt reports whether r's last login was within known_for of now. A
// now more than authSpan units past the last sweep (Known or Tick asked
// about a time no observation reached yet) is past every login's known_for.
func (m *Memory) knownAt(r *record, now int64) bool {
	return m.knownEnc(r, m.authNow(now))
}

// authNow is now encoded for knownEnc; 0 when now is past every login's
// known_for (see knownAt).
func (m *Memory) authNow(now int64) uint16 {
	if m.knownUnits <= 0 || now-m.sweptAt > authSpan*m.authUnit {
		return 0
	}
	return encodeAuth(now, m.authUnit)
}

func (m *Memory) knownEnc(r *record, nowEnc uint16) bool {
	if nowEnc == 0 || r.lastAuth == 0 {
		return false
	}
	return authAgeEnc(r.lastAuth, nowEnc) <= m.knownUnits
}

// markAuth records a login at t if it is newer than r's.
func (m *Memory) markAuth(r *record, t int64) {
	if t <= 0 || t >= 1<<32 {
		return
	}
	now := max(m.clock, t)
	if a := authAge(r.lastAuth, now, m.authUnit); a >= 0 && a <= (now-t)/m.authUnit {
		return // as new or newer already
	}
	if (now-t)/m.authUnit > authSpan {
		return // too old to be known
	}
	r.lastAuth = encodeAuth(t, m.authUnit)
}

// sweepAuth clears, in both tables, the logins older than authSpan units,
// visiting the slots due since the last sweep (the whole table every
// authSweepUnits units). Every path that records a login sweeps first, so
// every login is at most as new as sweptAt: after a gap longer than
// authSpan units (no event, no tick) all of them are too old to be known,
// and all are cleared before any could alias.
func (m *Memory) sweepAuth(now int64) {
	if m.sweptAt == 0 {
		m.sweptAt, m.instOK = now, false
		return
	}
	elapsed := now - m.sweptAt
	if elapsed < 1 {
		return
	}
	m.sweptAt, m.instOK = now, false // authNow depends on sweptAt
	period := authSweepUnits * m.authUnit
	all := elapsed/m.authUnit > authSpan // every login is older than that
	sweepTable(m.v4, now, elapsed, period, m.authUnit, all)
	sweepTable(m.v6, now, elapsed, period, m.authUnit, all)
}

func sweepTable[K addrKey](t *table[K], now, elapsed, period, unit int64, all bool) {
	n := int64(len(t.slots))
	if n == 0 {
		return
	}
	visit := n
	if elapsed < period && !all {
		visit = min(n, (n*elapsed+period-1)/period)
	}
	for ; visit > 0; visit-- {
		if t.sweep >= len(t.slots) {
			t.sweep = 0
		}
		if r := &t.slots[t.sweep].rec; r.lastAuth != 0 && (all || authAge(r.lastAuth, now, unit) > authSpan) {
			r.lastAuth = 0
		}
		t.sweep++
	}
}

// rescaleAuth re-encodes every login in a new unit (known_for changed), as
// of now; those older than authSpan new units are cleared.
func rescaleAuth[K addrKey](t *table[K], now, oldUnit, newUnit int64) {
	for i := range t.slots {
		r := &t.slots[i].rec
		a := authAge(r.lastAuth, now, oldUnit)
		if a < 0 {
			continue
		}
		at := now - a*oldUnit
		if (now-at)/newUnit > authSpan {
			r.lastAuth = 0
			continue
		}
		r.lastAuth = encodeAuth(at, newUnit)
	}
}
