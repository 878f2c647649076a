package failmem48

// record is what the decisions need to know about one address: 48 bytes,
// no pointers (the GC never scans the table). Times are Unix seconds, or
// bucket indices (mod 2^16) derived from them; counts saturate instead of
// wrapping.
type record struct {
	// recent holds the times of the last ringSize failures exactly: the
	// newest (Unix seconds, 0 = none) and the gaps between each and the one
	// before it (seconds, gapNone when older than any find_time or absent).
	newest   uint32
	lastAuth uint32 // Unix seconds of the last SuccessfulAuth; 0 never
	gaps     [ringSize - 1]uint16
	// fast and slow count failures per bucket for the limits the exact ring
	// cannot reach (max_failures above ringSize, known_max_failures) and
	// for the slow-scan window.
	fastBase, slowBase uint16
	// accounts holds fingerprints of up to 4 distinct accounts tried (0 =
	// empty); distinct keeps counting past them (see addAccount).
	accounts [4]uint16
	// pendSince is the Unix second (mod 2^16) of the oldest challenge for
	// a real account still waiting for its answer; pendN how many wait.
	pendSince  uint16
	fastN      [fastBuckets]uint8
	slowN      [slowBuckets]uint8
	proven     uint8 // bit i: the ring's i-th newest failure came over TCP/TLS/WS
	pendN      uint8
	distinct   uint8 // distinct accounts tried since the last ban or quiet spell
	blind      uint8 // challenge responses with a nonce Asterisk never issued
	unanswered uint8 // challenges realized as never answered
	flags      uint8
}

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
	r.proven = (r.proven << 1) & (1<<ringSize - 1)
	if proven {
		r.proven |= 1
	}
}

// recentIn returns how many of the ring's failures (all, and proven) fall
// within window seconds of now.
func (r *record) recentIn(now int64, window int64) (all, proven int) {
	if r.newest == 0 {
		return 0, 0
	}
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
		if r.proven&(1<<i) != 0 {
			proven++
		}
	}
	return all, proven
}

// bucket windows: base is the newest bucket's index mod 2^16; an index
// before it (a clock step back) counts in the newest bucket.
func advance(base *uint16, n []uint8, idx uint16) uint16 {
	if allZero(n) { // the one change from 5b184bf (see doc.go)
		*base = idx
		return idx
	}
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

func (r *record) addFast(idx uint16, n uint8) {
	addSat(&r.fastN[int(advance(&r.fastBase, r.fastN[:], idx))%fastBuckets], n)
}

func (r *record) addSlow(idx uint16, n uint8) {
	addSat(&r.slowN[int(advance(&r.slowBase, r.slowN[:], idx))%slowBuckets], n)
}

func (r *record) fastSum(idx uint16) int { return sumBuckets(r.fastBase, r.fastN[:], idx) }
func (r *record) slowSum(idx uint16) int { return sumBuckets(r.slowBase, r.slowN[:], idx) }

// fingerprint folds an account hash into a non-zero 16-bit value.
func fingerprint(h uint64) uint16 {
	f := uint16(h ^ h>>16 ^ h>>32 ^ h>>48)
	if f == 0 {
		f = 1
	}
	return f
}

// addAccount counts a new distinct account. The first four are remembered
// exactly (by a fingerprint of a per-process seeded hash, so an attacker
// cannot choose names that collide); past four, a name is new unless it
// matches one of the four, so a fifth name tried again counts again: the
// sketch over-counts, it never under-counts a scan of new names.
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
	r.accounts = [4]uint16{}
	r.distinct = 0
}

func allZero(n []uint8) bool {
	for _, v := range n {
		if v != 0 {
			return false
		}
	}
	return true
}
