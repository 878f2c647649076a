package failmem

// record is what the decisions need to know about one address: 44 bytes,
// no pointers (the GC never scans the table). Times are Unix seconds or
// bucket indices derived from them; counts saturate instead of wrapping.
type record struct {
	fast fastWindow // failures in find_time: all, and those over TCP/TLS
	slow slowWindow // failures and unanswered challenges in slow_find_time
	// accounts holds fingerprints of up to 4 distinct accounts tried (0 =
	// empty); distinct keeps counting past them (see addAccount).
	accounts [4]uint16
	lastAuth uint32 // Unix seconds of the last SuccessfulAuth; 0 never
	// pendSince is the Unix second (mod 2^16) of the oldest challenge for
	// a real account still waiting for its answer; pendN how many wait.
	pendSince  uint16
	pendN      uint8
	distinct   uint8 // distinct accounts tried since the last ban or quiet spell
	blind      uint8 // challenge responses with a nonce Asterisk never issued
	unanswered uint8 // challenges realized as never answered
	flags      uint8
	_          uint8
}

// record flags.
const (
	flagKnownShown      = 1 << iota // "failures from a known address" said once
	flagUnansweredShown             // "unanswered challenges only" said once
	flagBlindShown                  // "blind" said once
	flagOtherFailure                // a failure other than an unanswered challenge since the last quiet spell
)

// fastWindow counts failures in find_time with 4 buckets of width
// ceil(find_time/3): summing the 4 buckets up to now covers at least the last
// find_time (never under-counts) and at most find_time + width (counts a
// failure up to a third of a window too long).
type fastWindow struct {
	base   uint32 // bucket index (Unix second / width) of the newest bucket
	all    [4]uint8
	proven [4]uint8 // failures over TCP/TLS/WS: the source address is real
}

// slowWindow is the same with 8 buckets of width ceil(slow_find_time/7).
type slowWindow struct {
	base uint32
	n    [8]uint8
}

func addSat(p *uint8, n uint8) {
	if v := uint16(*p) + uint16(n); v > 255 {
		*p = 255
	} else {
		*p = uint8(v)
	}
}

// advance moves the window's newest bucket to idx, clearing the buckets that
// fell out. An idx older than the newest bucket (a clock step back) is
// counted in the newest bucket: late, never lost.
func (w *fastWindow) advance(idx uint32) uint32 {
	if idx <= w.base {
		return w.base
	}
	if d := idx - w.base; d >= 4 {
		w.all, w.proven = [4]uint8{}, [4]uint8{}
	} else {
		for i := w.base + 1; i <= idx; i++ {
			w.all[i%4], w.proven[i%4] = 0, 0
		}
	}
	w.base = idx
	return idx
}

func (w *fastWindow) add(idx uint32, proven bool, n uint8) {
	i := w.advance(idx) % 4
	addSat(&w.all[i], n)
	if proven {
		addSat(&w.proven[i], n)
	}
}

// sum returns the failures (all, proven) in the buckets that can still hold
// failures within the window ending in bucket idx.
func (w *fastWindow) sum(idx uint32) (all, proven int) {
	if idx > w.base && idx-w.base >= 4 {
		return 0, 0
	}
	for k := uint32(0); k < 4; k++ {
		if w.base < k {
			break
		}
		b := w.base - k
		if idx >= 3 && b < idx-3 {
			break
		}
		all += int(w.all[b%4])
		proven += int(w.proven[b%4])
	}
	return all, proven
}

func (w *slowWindow) advance(idx uint32) uint32 {
	if idx <= w.base {
		return w.base
	}
	if d := idx - w.base; d >= 8 {
		w.n = [8]uint8{}
	} else {
		for i := w.base + 1; i <= idx; i++ {
			w.n[i%8] = 0
		}
	}
	w.base = idx
	return idx
}

func (w *slowWindow) add(idx uint32, n uint8) { addSat(&w.n[w.advance(idx)%8], n) }

func (w *slowWindow) sum(idx uint32) int {
	if idx > w.base && idx-w.base >= 8 {
		return 0
	}
	s := 0
	for k := uint32(0); k < 8; k++ {
		if w.base < k {
			break
		}
		b := w.base - k
		if idx >= 7 && b < idx-7 {
			break
		}
		s += int(w.n[b%8])
	}
	return s
}

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
