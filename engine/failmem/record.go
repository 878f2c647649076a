package failmem

// record is what the decisions need to know about one address: 40 bytes,
// no pointers (the GC never scans the table), so an IPv6 slot (16-byte key)
// is 56 bytes and costs 56 / (7/8) = 64 bytes per tracked address at the
// table's fullest (an IPv4 slot 44, ≈ 50 bytes). Times are Unix seconds, or
// bucket indices (mod 2^16) derived from them; counts saturate instead of
// wrapping.
//
// From the 48-byte record of 5b184bf it saves 8 bytes; no decision at the
// defaults changes, except that known lasts up to 74 s past known_for:
//   - the fast buckets' base is derived from newest (every failure moves
//     both), 2 bytes;
//   - lastAuth is kept in 16 bits, in units of known_for/16384 (37 s at
//     7 days: known for 7 days and at most 74 s more; to the second up to
//     4.5 h), with a sweep that clears it before it could wrap
//     (lastauth.go), 2 bytes;
//   - three account fingerprints instead of four: enumeration is exact up to
//     enum_accounts 4 (default 3; it was 5), past it the sketch over-counts
//     (never under-counts), 2 bytes;
//   - proven, the flags and the blind and unanswered counts share 16 bits:
//     blind saturates at 7 and unanswered at 15 (they are shown, and a
//     decision only asks whether unanswered is above 0), 2 bytes.
type record struct {
	// recent holds the times of the last ringSize failures exactly: the
	// newest (Unix seconds, 0 = none) and the gaps between each and the one
	// before it (seconds, gapNone when older than any find_time or absent).
	newest uint32
	gaps   [ringSize - 1]uint16
	// lastAuth is when the address last authenticated successfully, as
	// encodeAuth puts it on a 16-bit circle (0 = never; lastauth.go).
	lastAuth uint16
	// slowBase is the newest slow bucket's index mod 2^16 (the fast
	// buckets' base is newest's bucket, not kept: addFailure).
	slowBase uint16
	// pendSince is the Unix second (mod 2^16) of the oldest challenge for
	// a real account still waiting for its answer; pendN how many wait.
	pendSince uint16
	// accounts holds fingerprints of up to len(accounts) distinct accounts
	// tried (0 = empty); distinct keeps counting past them (see addAccount).
	accounts [3]uint16
	// fast and slow count failures per bucket for the limits the exact ring
	// cannot reach (max_failures above ringSize, known_max_failures) and
	// for the slow-scan window.
	fastN    [fastBuckets]uint8
	slowN    [slowBuckets]uint8
	pendN    uint8
	distinct uint8 // distinct accounts tried since the last ban or quiet spell
	// bits packs proven (bit i: the ring's i-th newest failure came over
	// TCP/TLS/WS), the flags, and the blind and unanswered counts.
	bits uint16
}

// The fields packed in record.bits.
const (
	provenShift, provenBits         = 0, ringSize
	flagsShift, flagsBits           = provenShift + provenBits, 4
	blindShift, blindBits           = flagsShift + flagsBits, 3
	unansweredShift, unansweredBits = blindShift + blindBits, 4
	_                               = uint16(1<<(unansweredShift+unansweredBits) - 1) // all fit in 16 bits
)

func (r *record) field(shift, width uint) uint8 {
	return uint8(r.bits >> shift & (1<<width - 1))
}

func (r *record) setField(shift, width uint, v uint8) {
	mask := uint16(1<<width-1) << shift
	r.bits = r.bits&^mask | uint16(v)<<shift&mask
}

// addSatField adds n to a packed count, saturating at its width.
func (r *record) addSatField(shift, width uint, n uint8) {
	v := uint16(r.field(shift, width)) + uint16(n)
	r.setField(shift, width, uint8(min(v, 1<<width-1)))
}

func (r *record) proven() uint8         { return r.field(provenShift, provenBits) }
func (r *record) flags() uint8          { return r.field(flagsShift, flagsBits) }
func (r *record) setFlags(f uint8)      { r.setField(flagsShift, flagsBits, f) }
func (r *record) blind() int            { return int(r.field(blindShift, blindBits)) }
func (r *record) unanswered() int       { return int(r.field(unansweredShift, unansweredBits)) }
func (r *record) addBlind()             { r.addSatField(blindShift, blindBits, 1) }
func (r *record) addUnanswered(n uint8) { r.addSatField(unansweredShift, unansweredBits, n) }

// ringSize is how many failure times are kept exactly: the default
// max_failures (5), so the find_time rule is exact (4 failures, 11 minutes,
// 4 more is no ban) without a timestamp per failure.
const ringSize = 5

// gapNone marks a ring entry that is absent or more than 18 h older than
// the next: outside any find_time (find_time is at most 18 h).
const gapNone = 0xffff

// fastBuckets buckets of ceil(find_time/3) cover the last find_time (never
// under-count) and at most a third of a window more; slowBuckets buckets
// of ceil(slow_find_time/7) likewise, at most a seventh more.
const fastBuckets, slowBuckets = 4, 8

// record flags.
const (
	flagKnownShown      = 1 << iota // "failures from a known address" said once
	flagUnansweredShown             // "unanswered challenges only" said once
	flagBlindShown                  // "blind" said once
	flagOtherFailure                // a failure other than an unanswered challenge since the last quiet spell
)

func addSat(p *uint8, n uint8) {
	if v := uint16(*p) + uint16(n); v > 255 {
		*p = 255
	} else {
		*p = uint8(v)
	}
}

// addRecent puts a failure at t (Unix seconds) into the ring. A t older
// than the newest (a clock step back) is taken as the newest: late, never
// lost.
func (r *record) addRecent(t uint32, proven bool) {
	if r.newest == 0 {
		r.gaps = [ringSize - 1]uint16{gapNone, gapNone, gapNone, gapNone}
		r.newest = max(t, 1)
	} else {
		gap := uint16(gapNone)
		if t <= r.newest {
			gap, t = 0, r.newest
		} else if d := t - r.newest; d < gapNone {
			gap = uint16(d)
		}
		copy(r.gaps[1:], r.gaps[:len(r.gaps)-1])
		r.gaps[0] = gap
		r.newest = t
	}
	p := (r.proven() << 1) & (1<<ringSize - 1)
	if proven {
		p |= 1
	}
	r.setField(provenShift, provenBits, p)
}

// recentIn returns how many of the ring's failures (all, and proven) fall
// within window seconds of now.
func (r *record) recentIn(now int64, window int64) (all, proven int) {
	if r.newest == 0 {
		return 0, 0
	}
	p := r.proven()
	t := int64(r.newest)
	for i := 0; i < ringSize; i++ {
		if i > 0 {
			if r.gaps[i-1] == gapNone {
				break
			}
			t -= int64(r.gaps[i-1])
		}
		if now-t > window {
			break
		}
		all++
		if p&(1<<i) != 0 {
			proven++
		}
	}
	return all, proven
}

// bucket windows: base is the newest bucket's index mod 2^16; an index
// before it (a clock step back) counts in the newest bucket.
func advance(base *uint16, n []uint8, idx uint16) uint16 {
	d := int16(idx - *base)
	if d <= 0 {
		return *base
	}
	if int(d) >= len(n) {
		clear(n)
	} else {
		for i := *base + 1; i != idx+1; i++ {
			n[int(i)%len(n)] = 0
		}
	}
	*base = idx
	return idx
}

func sumBuckets(base uint16, n []uint8, idx uint16) int {
	d := int16(idx - base)
	if d >= int16(len(n)) {
		return 0
	}
	s := 0
	for k := 0; k < len(n); k++ {
		b := base - uint16(k)
		if int16(idx-b) >= int16(len(n)) {
			break
		}
		s += int(n[int(b)%len(n)])
	}
	return s
}

// addFailure counts a failure at t (Unix seconds, 0 < t < 2^32) in the ring
// and the fast buckets. The buckets between the old newest's and the new
// one's are cleared, from the exact times (no wrap of a 16-bit index).
//
// nowFast is t / fastW (worked out once per second: instant).
func (r *record) addFailure(t uint32, proven bool, fastW, nowFast int64) {
	old := r.newest
	was := bucketAt(int64(old), nowFast, fastW)
	first := old == 0
	r.addRecent(t, proven)
	now := was
	if r.newest != old {
		now = nowFast // newest moved to t
	}
	switch d := now - was; {
	case first || d >= fastBuckets:
		clear(r.fastN[:])
	default:
		for i := was + 1; i <= now; i++ {
			r.fastN[bucketOf(i)] = 0
		}
	}
	addSat(&r.fastN[bucketOf(now)], 1)
}

// addSlow counts n in the slow bucket of index idx. A window's first count
// sets its base: left at 0, a base more than 2^15 buckets behind idx would
// never move (idx would look older) and the window would count its
// failures forever, as the 48-byte record did (TestFirstCountSetsWindowBase).
func (r *record) addSlow(idx uint16, n uint8) {
	if r.slowN == ([slowBuckets]uint8{}) {
		r.slowBase = idx
	}
	addSat(&r.slowN[int(advance(&r.slowBase, r.slowN[:], idx))%slowBuckets], n)
}

// bucketAt is t / fastW, without the division when t is in now's bucket
// (nowFast): an address under attack fails within the same bucket.
func bucketAt(t, nowFast, fastW int64) int64 {
	if start := nowFast * fastW; t >= start && t-start < fastW {
		return nowFast
	}
	return t / fastW
}

// bucketOf is the fast bucket of index i (never negative, even for the
// first buckets after 1970).
func bucketOf(i int64) int { return int((i%fastBuckets + fastBuckets) % fastBuckets) }

// fastSum is the count of the fast buckets within fastBuckets of now's
// (nowFast: now / fastW). A now before newest (a clock step back) counts
// them all.
func (r *record) fastSum(nowFast, fastW int64) int {
	if r.newest == 0 {
		return 0
	}
	base := bucketAt(int64(r.newest), nowFast, fastW)
	d := nowFast - base
	s := 0
	for k := int64(0); k < fastBuckets && d+k < fastBuckets; k++ {
		s += int(r.fastN[bucketOf(base-k)])
	}
	return s
}

func (r *record) slowSum(idx uint16) int { return sumBuckets(r.slowBase, r.slowN[:], idx) }

// lump moves every bucket's count into the newest (saturating at 255): on
// a change of bucket width the counts are taken as counted at the newest
// bucket, which may count them longer than their window, never shorter.
func lump(base uint16, n []uint8) {
	var s uint8
	for i := range n {
		addSat(&s, n[i])
		n[i] = 0
	}
	n[int(base)%len(n)] = s
}

// fingerprint folds an account hash into a non-zero 16-bit value.
func fingerprint(h uint64) uint16 {
	f := uint16(h ^ h>>16 ^ h>>32 ^ h>>48)
	if f == 0 {
		f = 1
	}
	return f
}

// addAccount counts a new distinct account. The first three are remembered
// exactly (by a fingerprint of a per-process seeded hash, so an attacker
// cannot choose names that collide); past three, a name is new unless it
// matches one of the three, so a fourth name tried again counts again: the
// sketch over-counts, it never under-counts a scan of new names. Counts up
// to len(accounts)+1 are exact: enum_accounts up to 4 (the default is 3).
func (r *record) addAccount(h uint64) {
	f := fingerprint(h)
	for i, a := range r.accounts {
		if a == f {
			return
		}
		if a == 0 {
			r.accounts[i] = f
			addSat(&r.distinct, 1)
			return
		}
	}
	addSat(&r.distinct, 1)
}

func (r *record) resetAccounts() {
	r.accounts = [len(r.accounts)]uint16{}
	r.distinct = 0
}
