// Package failmem is the engine's failure memory: a compact, fixed-size
// record per source address (40 bytes; 44 per IPv4 slot, 56 per IPv6 slot:
// ≈ 50 bytes per tracked IPv4 address and 64 per IPv6 address at the
// table's fullest, 7/8) holding only
// what ban decisions need: failures in find_time (all, and those over
// TCP/TLS), failures and unanswered challenges in the slow-scan window,
// distinct accounts tried, challenges waiting for their answer, the last
// successful authentication ("known") and blind evidence. It tracks
// 1,048,576 addresses by default, and when full it forgets first what
// cannot be on its way to a ban, so a flood of one-shot sources cannot push
// out a source that is four failures into its window.
//
// The report's rich per-source aggregate (account names, User-Agent) lives
// elsewhere (activity.Source), bounded on its own: forgetting a report row
// must never forget a failure.
//
// It must never ban on its own (it returns verdicts; the engine acts), never
// hold a pointer per address (the GC would scan a million of them), never
// let a value an attacker chooses (an account name, a Call-ID) decide which
// record is kept or how it is counted, and never let UDP failure events
// alone ban an address that proved itself (see Options.KnownFor).
package failmem

import (
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"time"
	"unsafe"
)

// Kind is what an observation says about its source.
type Kind uint8

const (
	// Neutral events change nothing (e.g. other security events).
	Neutral Kind = iota
	// Failure is a counted failed attempt: unknown account, ACL, bad
	// request, a bad password not answering a PJSIP challenge.
	Failure
	// ChallengeSent is a digest challenge for a real account: the sender
	// should answer within Options.ChallengeTimeout.
	ChallengeSent
	// ChallengeFailed is a ChallengeResponseFailed: a failure that answers a
	// challenge.
	ChallengeFailed
	// AuthOK is a SuccessfulAuth: it answers a challenge and proves the
	// address is real (a forger never sees the nonce bound to it).
	AuthOK
)

// Transport is how the event's request arrived.
type Transport uint8

const (
	TransportUnknown Transport = iota // counted as unproven, like UDP
	UDP
	TCP
	TLS
	WS
	WSS
)

// ParseTransport maps Asterisk's transport names (ami.Address.Transport).
func ParseTransport(s string) Transport {
	switch s {
	case "UDP":
		return UDP
	case "TCP":
		return TCP
	case "TLS":
		return TLS
	case "WS":
		return WS
	case "WSS":
		return WSS
	}
	return TransportUnknown
}

// proven reports whether an event over t proves its source address: a
// connection needs the handshake, which a blind sender cannot complete.
func (t Transport) proven() bool { return t >= TCP }

// Observation is one event, already attributed to its true source.
type Observation struct {
	Time time.Time
	Kind Kind
	// Account is HashAccount of the account the attempt named; 0 when none
	// (or PJSIP's "<unknown>").
	Account   uint64
	Transport Transport
	// Blind: a ChallengeResponseFailed whose nonce Asterisk never issued
	// within its lifetime (see BlindNonce): sent without reading replies.
	Blind bool
}

// Verdict is what the memory concludes after an observation.
type Verdict struct {
	Ban    bool
	Reason string // why Ban, in the words the logs and the DB use
	// Flag is a note worth a log line and a report row; it is set once per
	// address and spell of activity, not on every event.
	Flag string
}

// Flag texts (also the report's notes).
const (
	FlagKnown      = "failures from a known address: forged or a shared NAT?"
	FlagUnanswered = "unanswered challenges only: challenges for real accounts never answered (a scan of existing accounts?)"
	FlagBlind      = "blind evidence: a challenge response with a nonce Asterisk never issued (sent without reading replies)"
)

// Options are the thresholds and sizes; DefaultOptions gives the defaults.
// Every window must be at least a few seconds (counts are kept per second).
type Options struct {
	MaxFailures     int           // failures in FindTime that ban
	FindTime        time.Duration //
	SlowMaxFailures int           // failures and unanswered challenges in SlowFindTime that ban; 0 off
	SlowFindTime    time.Duration
	// EnumAccounts is the distinct accounts tried that ban (0 off); counted
	// exactly up to 4, past that a repeated name may count again (never
	// fewer: record.addAccount).
	EnumAccounts int
	// ChallengeTimeout is how long a challenge for a real account may wait
	// for its answer (SuccessfulAuth or ChallengeResponseFailed) before it
	// counts as unanswered. A phone answers within its retransmission
	// timers (T1 = 0.5 s doubling), so seconds are plenty.
	ChallengeTimeout time.Duration
	// KnownFor: an address that authenticated successfully within it is
	// "known" (0: none is, by that rule).
	KnownFor time.Duration
	// KnownMaxFailures is the failures in FindTime, over any transport,
	// that ban a known address; 0 means UDP failures never ban one.
	KnownMaxFailures int
	// MaxAddrs is the number of addresses tracked at most.
	MaxAddrs int
	// Allowed, if set, says whether an address is a static or learned
	// allow: it is then known too. It is called only when a threshold is
	// reached, with no lock of the caller's held by failmem.
	Allowed func(netip.Addr) bool
}

// maxLimit bounds every count threshold. Counts are kept per bucket up to
// 255 (a third of find_time, a seventh of slow_find_time) and distinct
// accounts up to 255: a limit above what the buckets can hold is reached
// only by failures spread over the buckets — such limits mean "practically
// never", which is how they are used (e.g. to test one rule alone).
const maxLimit = 1 << 20

// DefaultOptions are the engine's defaults (engine.* config keys).
func DefaultOptions() Options {
	return Options{
		MaxFailures: 5, FindTime: 10 * time.Minute,
		SlowMaxFailures: 20, SlowFindTime: 24 * time.Hour,
		EnumAccounts:     3,
		ChallengeTimeout: 8 * time.Second,
		KnownFor:         7 * 24 * time.Hour,
		KnownMaxFailures: 50,
		MaxAddrs:         1 << 20,
	}
}

// Check reports the first option out of range.
func (o *Options) Check() error {
	switch {
	case o.MaxFailures < 1 || o.MaxFailures > maxLimit:
		return fmt.Errorf("failmem: max failures %d: want 1..%d", o.MaxFailures, maxLimit)
	case o.FindTime < 3*time.Second || o.FindTime > 18*time.Hour:
		return fmt.Errorf("failmem: find time %s: want 3s..18h (longer windows are the slow scan's)", o.FindTime)
	case o.SlowMaxFailures < 0 || o.SlowMaxFailures > maxLimit:
		return fmt.Errorf("failmem: slow max failures %d: want 0..%d", o.SlowMaxFailures, maxLimit)
	case o.SlowMaxFailures > 0 && o.SlowFindTime < 7*time.Second:
		return fmt.Errorf("failmem: slow find time %s: want at least 7s", o.SlowFindTime)
	case o.EnumAccounts < 0 || o.EnumAccounts > maxLimit:
		return fmt.Errorf("failmem: enum accounts %d: want 0..%d", o.EnumAccounts, maxLimit)
	case o.ChallengeTimeout < time.Second || o.ChallengeTimeout > time.Hour:
		return fmt.Errorf("failmem: challenge timeout %s: want 1s..1h", o.ChallengeTimeout)
	case o.KnownFor < 0:
		return errors.New("failmem: known_for must not be negative")
	case o.KnownMaxFailures < 0 || o.KnownMaxFailures > maxLimit:
		return fmt.Errorf("failmem: known max failures %d: want 0..%d", o.KnownMaxFailures, maxLimit)
	case o.MaxAddrs < 1024:
		return fmt.Errorf("failmem: max addresses %d: want at least 1024", o.MaxAddrs)
	}
	return nil
}

// Stats are the memory's counters.
type Stats struct {
	Tracked  int    `json:"tracked"` // addresses with a record
	Bytes    int    `json:"bytes"`   // table memory (slots allocated)
	Evicted  uint64 `json:"evicted"`
	Pending  int    `json:"pending_challenges"` // challenges queued for their timeout
	Overflow uint64 `json:"pending_overflow"`   // challenges not queued (queue full): realized at the address's next event
}

// maxPendingQueue bounds the timeout queue (24 bytes an entry, 1.5 MiB).
// Past it a waiting challenge is still realized, at its address's next
// event, only not on time.
const maxPendingQueue = 1 << 16

type pendingEntry struct {
	key      [16]byte
	deadline int64 // Unix seconds
}

// Memory is safe for concurrent use.
type Memory struct {
	// mu guards everything below.
	mu      sync.Mutex
	o       Options
	fastW   int64 // fast bucket width, seconds
	slowW   int64
	horizon int64 // the longest window, seconds
	v4      *table[[4]byte]
	v6      *table[[16]byte]
	rng     *rand.Rand
	evicted uint64
	// clock is the latest observation's time (Unix seconds): "now" for
	// eviction scores and re-indexing, on the clock decisions use.
	clock int64
	// authUnit is lastAuth's unit (seconds) and knownUnits known_for in it
	// (lastauth.go); sweptAt is when sweepAuth last ran.
	authUnit, knownUnits int64
	sweptAt              int64
	// inst caches the bucket indices of one second (instOK: valid).
	inst     instant
	instOK   bool
	queue    []pendingEntry // challenges waiting for their timeout, in deadline order
	qHead    int
	overflow uint64
}

var accountSeed = maphash.MakeSeed()

// HashAccount hashes an account name for Observation.Account with a seed
// made at start, so names that collide cannot be chosen in advance.
func HashAccount(name string) uint64 {
	if name == "" {
		return 0
	}
	h := maphash.String(accountSeed, name)
	if h == 0 {
		h = 1
	}
	return h
}

// New builds an empty memory; it allocates as addresses arrive.
func New(o Options) (*Memory, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	seed := rand.Uint64()
	m := &Memory{
		rng: rand.New(rand.NewPCG(seed, rand.Uint64())),
		v4:  &table[[4]byte]{hash: hash4, seed: seed},
		v6:  &table[[16]byte]{hash: hash16, seed: seed ^ 0x9e3779b97f4a7c15},
	}
	m.setOptions(o)
	// The slots live outside the heap (allocSlots): give them back when the
	// memory is collected (tests, a rebuilt engine); a daemon keeps its one.
	runtime.AddCleanup(m, func(t *table[[4]byte]) { freeSlots(t.slots, t.mapped) }, m.v4)
	runtime.AddCleanup(m, func(t *table[[16]byte]) { freeSlots(t.slots, t.mapped) }, m.v6)
	return m, nil
}

// SetOptions changes the thresholds (a config reload). Counts are kept;
// when a window's width changes its buckets are re-indexed to the new width
// (counts may then cover somewhat more than the window, never less).
func (m *Memory) SetOptions(o Options) error {
	if err := o.Check(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	oldFast, oldSlow, oldAuth := m.fastW, m.slowW, m.authUnit
	m.setOptions(o)
	if oldFast != m.fastW || oldSlow != m.slowW {
		// The buckets' counts are kept, lumped into the newest bucket (the
		// fast one at newest, the slow one now): counted for more than the
		// new window may hold, never less (up to 255 a window).
		si := uint16(m.clock / m.slowW)
		rebase := func(r *record) {
			if r.newest != 0 {
				lump(uint16(bucketOf(int64(r.newest)/m.fastW)), r.fastN[:])
			}
			lump(si, r.slowN[:])
			r.slowBase = si
		}
		for i := range m.v4.slots {
			rebase(&m.v4.slots[i].rec)
		}
		for i := range m.v6.slots {
			rebase(&m.v6.slots[i].rec)
		}
	}
	if oldAuth != m.authUnit {
		rescaleAuth(m.v4, m.clock, oldAuth, m.authUnit)
		rescaleAuth(m.v6, m.clock, oldAuth, m.authUnit)
	}
	return nil
}

func (m *Memory) setOptions(o Options) {
	m.o = o
	m.instOK = false
	m.fastW = ceilDiv(int64(o.FindTime/time.Second), 3)
	m.slowW = ceilDiv(int64(max(o.SlowFindTime, 7*time.Second)/time.Second), 7)
	m.horizon = int64(max(o.FindTime, o.SlowFindTime) / time.Second)
	kf := int64(o.KnownFor / time.Second)
	m.authUnit = authUnitFor(kf)
	m.knownUnits = 0
	if kf > 0 {
		m.knownUnits = ceilDiv(kf, m.authUnit)
	}
	// Each table may hold every address; growth keeps the load at most 7/8
	// (at the largest size, MaxAddrs in MaxAddrs·8/7 rounded down: 7/8 and
	// at most one slot more).
	maxLen := o.MaxAddrs * maxLoadDen / maxLoadNum
	m.v4.maxLen, m.v6.maxLen = maxLen, maxLen
	m.v4.maxKeys, m.v6.maxKeys = o.MaxAddrs, o.MaxAddrs
}

func ceilDiv(a, b int64) int64 { return max((a+b-1)/b, 1) }

// instant is a time's bucket indices and login encoding, worked out once
// per second (a flood's events share it) rather than with three divisions
// per event.
type instant struct {
	sec  int64  // Unix seconds
	fast int64  // sec / fastW
	slow uint16 // sec / slowW, mod 2^16
	auth uint16 // authNow(sec)
}

func (m *Memory) at(now int64) *instant {
	if !m.instOK || m.inst.sec != now {
		m.inst = instant{sec: now, fast: now / m.fastW, slow: uint16(now / m.slowW), auth: m.authNow(now)}
		m.instOK = true
	}
	return &m.inst
}

// Stats returns the counters.
func (m *Memory) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Tracked: m.v4.n + m.v6.n, Bytes: m.v4.bytes() + m.v6.bytes(), Evicted: m.evicted,
		Pending: len(m.queue) - m.qHead, Overflow: m.overflow}
}

// recRef finds (and with create, makes) a's record. The pointer is valid
// until the next insert or remove.
func (m *Memory) recRef(a netip.Addr, create bool) *record {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() {
		return nil
	}
	if a.Is4() {
		k := a.As4()
		if i := m.v4.find(&k); i >= 0 {
			return &m.v4.slots[i].rec
		}
		if !create {
			return nil
		}
		m.makeRoom(true)
		return &m.v4.slots[m.v4.insert(&k)].rec
	}
	k := a.As16()
	if i := m.v6.find(&k); i >= 0 {
		return &m.v6.slots[i].rec
	}
	if !create {
		return nil
	}
	m.makeRoom(false)
	return &m.v6.slots[m.v6.insert(&k)].rec
}

// makeRoom evicts one record when the memory holds MaxAddrs addresses (or
// the new address's table is at its largest and fullest).
func (m *Memory) makeRoom(v4 bool) {
	total := m.v4.n + m.v6.n
	for total >= m.o.MaxAddrs || (v4 && m.v4.full()) || (!v4 && m.v6.full()) {
		// Evict from the new address's table when it is the one that is
		// full or holds most; else from the other.
		fromV4 := v4
		if total >= m.o.MaxAddrs && !(v4 && m.v4.full()) && !(!v4 && m.v6.full()) {
			fromV4 = m.v4.n >= m.v6.n
		}
		var ok bool
		if fromV4 {
			ok = evictOne(m, m.v4)
		} else {
			ok = evictOne(m, m.v6)
		}
		if !ok {
			return
		}
		m.evicted++
		total--
	}
}

// evictSample is how many records an eviction compares, evictSampleMore
// how many when none of the first has an empty window. Among 32 random
// neighbours a source close to a ban is the one kept unless nearly all of
// them are as close: pushing it out takes an attacker that many sources as
// far along, each of which is then on its way to a ban itself.
const evictSample, evictSampleMore = 32, 96

// evictOne removes the record least likely to be on its way to a ban among
// evictSample occupied slots from a random start.
func evictOne[K addrKey](m *Memory, t *table[K]) bool {
	if t.n == 0 {
		return false
	}
	in := *m.at(m.clock)
	var zero K
	best, bestScore := -1, uint64(1<<64-1)
	i := m.rng.IntN(len(t.slots))
	for seen, scanned := 0, 0; scanned < len(t.slots); scanned++ {
		if seen >= evictSampleMore || seen >= evictSample && bestScore < 1<<32 {
			break
		}
		if t.slots[i].key != zero {
			seen++
			if s := m.keepScore(&t.slots[i].rec, &in); s < bestScore {
				best, bestScore = i, s
			}
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
	if best < 0 {
		return false
	}
	t.remove(best)
	return true
}

// keepScore orders records for eviction, lowest first: nothing in any
// window, then the least progress toward a ban (relative to each
// threshold), older before newer; known addresses last, since forgetting
// one would expose its phone to forged failures.
func (m *Memory) keepScore(r *record, in *instant) uint64 {
	fast := m.fastCount(r, in)
	slow := r.slowSum(in.slow)
	var progress uint64
	if fast > 0 || slow > 0 || r.pendN > 0 {
		p := fast * 1000 / m.o.MaxFailures
		if m.o.SlowMaxFailures > 0 {
			p = max(p, slow*1000/m.o.SlowMaxFailures)
		}
		if m.o.EnumAccounts > 0 {
			p = max(p, int(r.distinct)*1000/m.o.EnumAccounts)
		}
		progress = uint64(min(p, 1<<20)) + 1
	}
	score := progress << 32
	if m.knownEnc(r, in.auth) {
		score |= 1 << 63
	}
	// Newer slow buckets keep longer among equals.
	return score | uint64(r.newest)
}

// fastCount is the failures in find_time: exact from the ring when
// max_failures fits in it, else the buckets' count.
func (m *Memory) fastCount(r *record, in *instant) int {
	if m.o.MaxFailures <= ringSize {
		all, _ := r.recentIn(in.sec, int64(m.o.FindTime/time.Second))
		return all
	}
	return r.fastSum(in.fast, m.fastW)
}

// Observe records one event of addr and returns the verdict.
func (m *Memory) Observe(addr netip.Addr, o Observation) Verdict {
	if o.Kind == Neutral {
		return Verdict{}
	}
	now := o.Time.Unix()
	m.mu.Lock()
	m.clock = max(m.clock, now)
	m.sweepAuth(m.clock)
	r := m.recRef(addr, true)
	if r == nil {
		m.mu.Unlock()
		return Verdict{}
	}
	v, check := m.observe(r, addr, o, now)
	m.mu.Unlock()
	if check.need {
		v = m.finish(addr, v, check)
	}
	return v
}

// pendingCheck carries a threshold crossing out of the lock: whether the
// address is known may call Options.Allowed.
type pendingCheck struct {
	need                     bool
	fast, proven, slow, enum int
	fastAny                  int // the buckets' count, for known_max_failures
	unansweredOnly           bool
	knownByAuth              bool
}

func (m *Memory) observe(r *record, addr netip.Addr, o Observation, now int64) (Verdict, pendingCheck) {
	var v Verdict
	in := *m.at(now)
	// No failure for longer than every window (exact, from the ring's
	// newest): accounts tried before no longer count toward enumeration (a
	// phone with three lines failing once a week is not enumerating users).
	quiet := r.newest == 0 || now-int64(r.newest) > m.horizon
	if quiet && r.distinct > 0 {
		r.resetAccounts()
	}
	if quiet && r.flags() != 0 && r.fastSum(in.fast, m.fastW) == 0 && r.slowSum(in.slow) == 0 && r.pendN == 0 {
		r.setFlags(0) // a new spell: notes may be said again
	}
	realized := m.settle(r, &in)
	counted := false
	switch o.Kind {
	case ChallengeSent:
		if r.pendN == 0 {
			r.pendSince = uint16(now)
			m.enqueue(addr, now+int64(m.o.ChallengeTimeout/time.Second)+1)
		}
		addSat(&r.pendN, 1)
	case AuthOK:
		if r.pendN > 0 {
			r.pendN--
		}
		m.markAuth(r, now)
	case ChallengeFailed, Failure:
		if o.Kind == ChallengeFailed && r.pendN > 0 {
			r.pendN--
		}
		if now > 0 && now < 1<<32 {
			r.addFailure(uint32(now), o.Transport.proven(), m.fastW, in.fast)
		}
		r.addSlow(in.slow, 1)
		r.setFlags(r.flags() | flagOtherFailure)
		if o.Account != 0 {
			r.addAccount(o.Account)
		}
		if o.Blind {
			r.addBlind()
			if r.flags()&flagBlindShown == 0 {
				r.setFlags(r.flags() | flagBlindShown)
				v.Flag = FlagBlind
			}
		}
		counted = true
	}
	if !counted && realized == 0 {
		return v, pendingCheck{}
	}
	return v, m.check(r, &in)
}

// check reads the windows after a change; the known rule is applied by
// finish, outside the lock.
func (m *Memory) check(r *record, in *instant) pendingCheck {
	c := pendingCheck{slow: r.slowSum(in.slow), enum: int(r.distinct)}
	// The proven rule reads the ring; with max_failures above its size it
	// bans at ringSize proven failures (stricter, never later).
	_, c.proven = r.recentIn(in.sec, int64(m.o.FindTime/time.Second))
	c.fast = m.fastCount(r, in)
	c.fastAny = r.fastSum(in.fast, m.fastW)
	c.unansweredOnly = r.flags()&flagOtherFailure == 0 && r.unanswered() > 0
	c.knownByAuth = m.knownEnc(r, in.auth)
	crossed := c.fast >= m.o.MaxFailures ||
		(m.o.SlowMaxFailures > 0 && c.slow >= m.o.SlowMaxFailures) ||
		(m.o.EnumAccounts > 0 && c.enum >= m.o.EnumAccounts) ||
		(m.o.KnownMaxFailures > 0 && c.fastAny >= m.o.KnownMaxFailures)
	c.need = crossed || c.unansweredOnly
	return c
}

// finish turns a crossing into a verdict.
func (m *Memory) finish(addr netip.Addr, v Verdict, c pendingCheck) Verdict {
	o := &m.o
	known := c.knownByAuth
	crossed := c.fast >= o.MaxFailures || (o.SlowMaxFailures > 0 && c.slow >= o.SlowMaxFailures) ||
		(o.EnumAccounts > 0 && c.enum >= o.EnumAccounts) || (o.KnownMaxFailures > 0 && c.fastAny >= o.KnownMaxFailures)
	if !known && crossed && o.Allowed != nil {
		known = o.Allowed(addr.Unmap())
	}
	setFlag := func(bit uint8, text string) {
		m.mu.Lock()
		if r := m.recRef(addr, false); r != nil && r.flags()&bit == 0 {
			r.setFlags(r.flags() | bit)
			if v.Flag == "" {
				v.Flag = text
			}
		}
		m.mu.Unlock()
	}
	switch {
	case known && c.proven >= min(o.MaxFailures, ringSize):
		v.Ban, v.Reason = true, fmt.Sprintf("%d failures over TCP/TLS in %s from a known address", c.proven, o.FindTime)
	case known && o.KnownMaxFailures > 0 && c.fastAny >= o.KnownMaxFailures:
		v.Ban, v.Reason = true, fmt.Sprintf("%d failures in %s from a known address (known_max_failures %d)", c.fastAny, o.FindTime, o.KnownMaxFailures)
	case known && crossed:
		setFlag(flagKnownShown, FlagKnown)
	case c.fast >= o.MaxFailures:
		v.Ban, v.Reason = true, fmt.Sprintf("%d failures in %s", o.MaxFailures, o.FindTime)
	case o.SlowMaxFailures > 0 && c.slow >= o.SlowMaxFailures:
		v.Ban, v.Reason = true, fmt.Sprintf("slow scan: %d failures in %s", o.SlowMaxFailures, o.SlowFindTime)
		if c.unansweredOnly {
			v.Reason = fmt.Sprintf("slow scan: %d unanswered challenges in %s", o.SlowMaxFailures, o.SlowFindTime)
		}
	case o.EnumAccounts > 0 && c.enum >= o.EnumAccounts:
		v.Ban, v.Reason = true, fmt.Sprintf("user enumeration: %d accounts tried", c.enum)
	}
	if c.unansweredOnly && !v.Ban {
		setFlag(flagUnansweredShown, FlagUnanswered)
	}
	if v.Ban {
		m.mu.Lock()
		if r := m.recRef(addr, false); r != nil {
			// Enumeration counts anew after a ban; the windows keep their
			// failures (a slow scanner back after its ban is banned again at
			// its next failure, and escalates).
			r.resetAccounts()
		}
		m.mu.Unlock()
	}
	return v
}

// settle realizes the challenges that waited longer than the timeout as
// unanswered: each counts in the slow window. It returns how many.
func (m *Memory) settle(r *record, in *instant) int {
	if r.pendN == 0 {
		return 0
	}
	age := int64(uint16(in.sec) - r.pendSince)
	if age <= int64(m.o.ChallengeTimeout/time.Second) {
		return 0
	}
	n := r.pendN
	r.pendN = 0
	r.addSlow(in.slow, n)
	r.addUnanswered(n)
	return int(n)
}

func (m *Memory) enqueue(addr netip.Addr, deadline int64) {
	if len(m.queue)-m.qHead >= maxPendingQueue {
		m.overflow++
		return
	}
	if m.qHead > len(m.queue)/2 && m.qHead > 1024 {
		n := copy(m.queue, m.queue[m.qHead:])
		m.queue = m.queue[:n]
		m.qHead = 0
	}
	m.queue = append(m.queue, pendingEntry{key: addr.Unmap().As16(), deadline: deadline})
}

// Tick realizes the challenges whose timeout passed by now and calls fn for
// each address whose verdict that changes (a ban at the slow-scan threshold,
// or a note). The engine calls it about once a second.
func (m *Memory) Tick(now time.Time, fn func(netip.Addr, Verdict)) {
	sec := now.Unix()
	for {
		m.mu.Lock()
		if m.qHead == len(m.queue) || m.queue[m.qHead].deadline > sec {
			if m.qHead == len(m.queue) {
				m.queue, m.qHead = m.queue[:0], 0
			}
			m.mu.Unlock()
			return
		}
		e := m.queue[m.qHead]
		m.qHead++
		addr := netip.AddrFrom16(e.key).Unmap()
		var c pendingCheck
		if r := m.recRef(addr, false); r != nil {
			if m.settle(r, m.at(sec)) > 0 {
				c = m.check(r, m.at(sec))
			} else if r.pendN > 0 {
				// Answered, and newer challenges wait: their own deadline.
				since := sec - int64(uint16(sec)-r.pendSince)
				m.enqueue(addr, since+int64(m.o.ChallengeTimeout/time.Second)+1)
			}
		}
		m.mu.Unlock()
		if c.need {
			if v := m.finish(addr, Verdict{}, c); v.Ban || v.Flag != "" {
				fn(addr, v)
			}
		}
	}
}

// MarkKnown records a successful authentication of addr at t (seeding the
// memory from the state DB at start).
func (m *Memory) MarkKnown(addr netip.Addr, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock = max(m.clock, t.Unix())
	m.sweepAuth(m.clock)
	if r := m.recRef(addr, true); r != nil {
		m.markAuth(r, t.Unix())
	}
}

// Known reports whether addr authenticated successfully within KnownFor of
// now (the allow callback is not consulted).
func (m *Memory) Known(addr netip.Addr, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.recRef(addr, false)
	return r != nil && m.knownAt(r, now.Unix())
}

// Blind returns how many blind challenge responses addr sent (0 if
// untracked), up to 7 (the count saturates: record.bits).
func (m *Memory) Blind(addr netip.Addr) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recRef(addr, false); r != nil {
		return r.blind()
	}
	return 0
}

// Unanswered returns how many challenges addr never answered (0 if
// untracked), up to 15 (the count saturates; the slow window counts them
// all).
func (m *Memory) Unanswered(addr netip.Addr) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.recRef(addr, false); r != nil {
		return r.unanswered()
	}
	return 0
}

// Forget drops addr's record (an admin's unban).
func (m *Memory) Forget(addr netip.Addr) {
	addr = addr.Unmap()
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr.Is4() {
		k := addr.As4()
		if i := m.v4.find(&k); i >= 0 {
			m.v4.remove(i)
		}
	} else if addr.Is6() {
		k := addr.As16()
		if i := m.v6.find(&k); i >= 0 {
			m.v6.remove(i)
		}
	}
}

func sizeofSlot[K addrKey](s *slot[K]) uintptr { return unsafe.Sizeof(*s) }

// nonceLifetime is how long Asterisk accepts a nonce it issued
// (res_pjsip_authenticator_digest.c: 32 s by default).
const nonceLifetime = 32

// BlindNonce reports whether a PJSIP ChallengeResponseFailed's Challenge
// cannot be a nonce Asterisk issued within its lifetime before at (the
// event's time): Asterisk's nonces are "<unix time>/<32 lower-case hex>".
// A client that read the 401 returns such a nonce; a blind sender must make
// one up or reuse an old one. With a zero at only the form is checked. A
// nonce of the right form and age may still have been fetched by someone
// else's address (forged/case2): not blind by this test.
func BlindNonce(challenge string, at time.Time) bool {
	ts, hex, ok := cutByte(challenge, '/')
	if !ok || len(ts) == 0 || len(ts) > 12 || len(hex) != 32 {
		return true
	}
	var t int64
	for i := 0; i < len(ts); i++ {
		c := ts[i]
		if c < '0' || c > '9' {
			return true
		}
		t = t*10 + int64(c-'0')
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return true
		}
	}
	if at.IsZero() {
		return false
	}
	// The nonce's time has whole seconds, the event's milliseconds: allow
	// one second of rounding at the young end.
	age := at.Unix() - t
	return age < -1 || age > nonceLifetime
}

func cutByte(s string, sep byte) (before, after string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
