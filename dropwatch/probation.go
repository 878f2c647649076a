package dropwatch

import (
	"context"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipsentry/sipsentry/dropwatch/sip"
	"github.com/sipsentry/sipsentry/state"
)

// Resolver finds an address's forward-confirmed PTR name: a PTR name whose
// own A/AAAA records include the address.
type Resolver interface {
	// ConfirmedName returns the name, or "" when there is none.
	ConfirmedName(ctx context.Context, a netip.Addr) (string, error)
}

// Gate opens the firewall for a probation.
type Gate interface {
	// AdmitSIP lets a reach the SIP ports for d. The admission must end by
	// itself after d (a kernel timeout), so a crash cannot leave it open.
	AdmitSIP(ctx context.Context, a netip.Addr, d time.Duration) error
	// Revoke ends a's admission at once (before a ban).
	Revoke(ctx context.Context, a netip.Addr) error
}

// Banner bans an address (the engine's manual ban path).
type Banner interface {
	Ban(ctx context.Context, a netip.Addr, reason string)
}

// Learner learns an address as a push server.
type Learner interface {
	Learn(ctx context.Context, a netip.Addr, ev state.PushEvidence) error
}

// Clock is time for the Probation; tests use a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f after d on its own goroutine; stop cancels it.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) func() bool {
	return time.AfterFunc(d, f).Stop
}

// Policy is what a reload may change (push.* of the config).
type Policy struct {
	// UserAgents are push.user_agents.
	UserAgents []*regexp.Regexp
	// Domains are push.domains: a confirmed PTR name in one is learned.
	Domains []string
	// Duration is push.probation; 0 grants no probation (FCrDNS still
	// learns).
	Duration time.Duration
	// MaxPerHour is push.max_probations.
	MaxPerHour int
}

// ProbationOptions configure a Probation.
type ProbationOptions struct {
	Policy
	// AORExists tells whether a REGISTER's To user is an AOR of this PBX;
	// nil accepts any (push parameters alone then make a candidate).
	AORExists func(user string) bool

	Resolver Resolver
	Gate     Gate
	Banner   Banner
	Learner  Learner
	Clock    Clock
	Log      *slog.Logger
}

// Bounds of the Probation's memory: the addresses considered in the last
// day, and the candidates waiting for their DNS check. A candidate beyond
// them is refused (counted and logged), never queued without bound.
const (
	maxConsidered  = 10_000
	candidateQueue = 64
	dnsTimeout     = 5 * time.Second
	oncePer        = 24 * time.Hour
)

// Outcomes of a candidate, as counted and logged.
const (
	OutcomeLearnedPTR  = "learned_ptr"  // FCrDNS in push.domains: learned at once
	OutcomeLearnedAuth = "learned_auth" // SuccessfulAuth with a push UA during probation
	OutcomeBanned      = "banned"       // a failure during probation
	OutcomeEnded       = "ended"        // silence (or an auth without a push UA) ended it
	OutcomeRefused     = "refused"      // no probation: disabled, hourly cap, queue or memory full
)

type candidate struct {
	addr    netip.Addr
	req     sip.Request
	country string
	pushUA  bool
	at      time.Time
}

type active struct {
	c    candidate
	stop func() bool
}

// Probation turns dropped REGISTERs that look like a push server's into
// candidates, and candidates into learned push servers, bans or nothing.
type Probation struct {
	o      ProbationOptions
	policy atomic.Pointer[Policy]

	mu         sync.Mutex // guards considered, running, grants and the overflow warnings
	considered map[netip.Addr]time.Time
	running    map[netip.Addr]*active
	grants     []time.Time // probation starts within the last hour
	// overflow warnings: at most one a minute
	lastOverflowLog time.Time
	suppressed      int
	lastPrune       time.Time // of considered

	queue   chan candidate
	onState func(a netip.Addr, st string, at time.Time)

	candidates prometheus.Counter
	probations prometheus.Counter
	outcomes   *prometheus.CounterVec
}

// NewProbation builds a Probation; Run must run for candidates to be
// examined.
func NewProbation(o ProbationOptions) *Probation {
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	p := &Probation{o: o, considered: map[netip.Addr]time.Time{}, running: map[netip.Addr]*active{},
		queue: make(chan candidate, candidateQueue)}
	p.SetPolicy(o.Policy)
	p.candidates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sipsentry_push_candidates_total",
		Help: "Dropped REGISTERs from outside the allowed countries that looked like a push server's (User-Agent or push parameters), once per address per day.",
	})
	p.probations = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sipsentry_push_probations_total",
		Help: "Probations granted: a push candidate let through to the SIP ports for push.probation.",
	})
	p.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipsentry_push_candidate_outcomes_total",
		Help: "How push candidates ended: learned_ptr, learned_auth, banned, ended, refused.",
	}, []string{"outcome"})
	return p
}

// SetPolicy applies a reloaded push.* policy to the candidates that come
// next; a running probation keeps its duration.
func (p *Probation) SetPolicy(pol Policy) { p.policy.Store(&pol) }

// Collectors are the Probation's metrics.
func (p *Probation) Collectors() []prometheus.Collector {
	return []prometheus.Collector{p.candidates, p.probations, p.outcomes}
}

func (p *Probation) uaMatches(ua string) bool {
	for _, re := range p.policy.Load().UserAgents {
		if re.MatchString(ua) {
			return true
		}
	}
	return false
}

// Consider looks at one dropped UDP REGISTER from outside the allowed
// countries. It never blocks: the DNS check and the decision happen in Run.
func (p *Probation) Consider(a netip.Addr, req sip.Request, country string) {
	if req.Method != "REGISTER" {
		return
	}
	pushUA := req.UserAgent != "" && p.uaMatches(req.UserAgent)
	pushParams := req.Push != 0 && (p.o.AORExists == nil || p.o.AORExists(req.ToUser))
	if !pushUA && !pushParams {
		return
	}
	a = a.Unmap()
	now := p.o.Clock.Now()
	p.mu.Lock()
	if t, ok := p.considered[a]; ok && now.Sub(t) < oncePer {
		p.mu.Unlock()
		return // once per address per day
	}
	if len(p.considered) >= maxConsidered && now.Sub(p.lastPrune) >= time.Minute {
		// At most once a minute: while forged candidates keep the map
		// full, a walk per packet would cost 10,000 steps each.
		p.lastPrune = now
		for k, t := range p.considered {
			if now.Sub(t) >= oncePer {
				delete(p.considered, k)
			}
		}
	}
	full := len(p.considered) >= maxConsidered
	if !full {
		p.considered[a] = now
	}
	p.mu.Unlock()
	c := candidate{addr: a, req: req, country: country, pushUA: pushUA, at: now}
	p.candidates.Inc()
	if full {
		// Spoofed sources can mint candidates without end: count them, and
		// log the overflow at most once a minute, never once per address.
		p.overflow(c, "more than 10000 candidates in a day")
		return
	}
	select {
	case p.queue <- c:
	default:
		p.retryIn(a, retryRefused)
		p.overflow(c, "too many candidates waiting for their DNS check")
	}
}

// retryRefused: a candidate refused for lack of room (the hour's
// probations used up, the DNS queue full) may be one again this much later,
// not only the next day: its REGISTER retries keep coming.
const retryRefused = 10 * time.Minute

// retryIn lets a be considered again d from now.
func (p *Probation) retryIn(a netip.Addr, d time.Duration) {
	p.mu.Lock()
	if _, ok := p.considered[a]; ok {
		p.considered[a] = p.o.Clock.Now().Add(d - oncePer)
	}
	p.mu.Unlock()
}

// overflow refuses a candidate the Probation has no room for.
func (p *Probation) overflow(c candidate, why string) {
	p.outcomes.WithLabelValues(OutcomeRefused).Inc()
	p.mu.Lock()
	p.suppressed++
	logNow := c.at.Sub(p.lastOverflowLog) >= time.Minute
	n := p.suppressed
	if logNow {
		p.lastOverflowLog, p.suppressed = c.at, 0
	}
	p.mu.Unlock()
	if logNow {
		p.o.Log.Warn("dropwatch: push candidates refused: no room (a flood of forged REGISTERs?)", "why", why,
			"refused_since_last_warning", n, "last_addr", c.addr)
	}
}

func (p *Probation) attrs(c candidate, more ...any) []any {
	return append([]any{"addr", c.addr, "country", c.country, "user_agent", sip.Printable(c.req.UserAgent),
		"push_params", c.req.Push.String(), "aor", sip.Printable(c.req.ToUser)}, more...)
}

func (p *Probation) state(a netip.Addr, st string, at time.Time) {
	if p.onState != nil {
		p.onState(a, st, at)
	}
}

func (p *Probation) outcome(c candidate, out, st, why string) {
	p.outcomes.WithLabelValues(out).Inc()
	p.o.Log.Info("dropwatch: push candidate outcome", p.attrs(c, "outcome", out, "why", why)...)
	p.state(c.addr, st, p.o.Clock.Now())
}

func (p *Probation) refuse(c candidate, why string) {
	p.outcome(c, OutcomeRefused, state.PushRefused, why)
}

// Run examines candidates until ctx ends.
func (p *Probation) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-p.queue:
			p.examine(ctx, c)
		}
	}
}

// inDomains tells whether name is one of domains or below one.
func inDomains(name string, domains []string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d != "" && (name == d || strings.HasSuffix(name, "."+d)) {
			return true
		}
	}
	return false
}

func (p *Probation) examine(ctx context.Context, c candidate) {
	pol := p.policy.Load()
	p.o.Log.Info("dropwatch: push candidate: a dropped REGISTER looks like a push server's", p.attrs(c)...)
	p.state(c.addr, state.PushCandidate, c.at)
	if p.o.Resolver != nil {
		dctx, cancel := context.WithTimeout(ctx, dnsTimeout)
		name, err := p.o.Resolver.ConfirmedName(dctx, c.addr)
		cancel()
		if err != nil {
			p.o.Log.Info("dropwatch: push candidate has no confirmed PTR name", p.attrs(c, "err", err)...)
		}
		if err == nil && name != "" && inDomains(name, pol.Domains) {
			ev := state.PushEvidence{How: state.HowPTR, PTR: name, UserAgent: c.req.UserAgent, AOR: c.req.ToUser,
				FirstSeen: c.at, LastSeen: p.o.Clock.Now()}
			if err := p.o.Learner.Learn(ctx, c.addr, ev); err != nil {
				p.o.Log.Error("dropwatch: learning a push server failed", p.attrs(c, "err", err)...)
				p.refuse(c, "learning failed")
				return
			}
			p.outcome(c, OutcomeLearnedPTR, state.PushLearned, "forward-confirmed PTR "+sip.Printable(name)+" is in push.domains")
			return
		}
	}
	if pol.Duration <= 0 {
		p.refuse(c, "push.probation = 0 disables probation")
		return
	}
	now := p.o.Clock.Now()
	p.mu.Lock()
	kept := p.grants[:0]
	for _, t := range p.grants {
		if now.Sub(t) < time.Hour {
			kept = append(kept, t)
		}
	}
	p.grants = kept
	if len(p.grants) >= pol.MaxPerHour {
		p.mu.Unlock()
		p.retryIn(c.addr, retryRefused)
		p.refuse(c, "push.max_probations reached this hour")
		return
	}
	p.grants = append(p.grants, now)
	p.mu.Unlock()
	// The probation starts only once the admission is in the kernel: an
	// outcome taken earlier would revoke an admission not yet made, which
	// would then open the door after the ban.
	if err := p.o.Gate.AdmitSIP(ctx, c.addr, pol.Duration); err != nil {
		p.o.Log.Error("dropwatch: opening the firewall for a probation failed", p.attrs(c, "err", err)...)
		p.refuse(c, "the firewall refused the admission")
		return
	}
	p.probations.Inc()
	p.o.Log.Info("dropwatch: push candidate on probation: let through to the SIP ports", p.attrs(c, "for", pol.Duration)...)
	p.state(c.addr, state.PushProbation, now)
	a := &active{c: c}
	p.mu.Lock()
	p.running[c.addr] = a
	a.stop = p.o.Clock.AfterFunc(pol.Duration, func() { p.silence(c.addr) })
	p.mu.Unlock()
}

// take removes a's running probation, if any; whoever takes it decides.
func (p *Probation) take(a netip.Addr) *active {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.running[a]
	delete(p.running, a)
	return r
}

// silence ends a probation nobody used. The admission ends by its own
// kernel timeout: revoking it here could remove an allow the engine
// learned meanwhile.
func (p *Probation) silence(a netip.Addr) {
	if r := p.take(a); r != nil {
		p.outcome(r.c, OutcomeEnded, state.PushEnded, "no authentication during the probation")
	}
}

// OnProbation tells whether a is on probation now.
func (p *Probation) OnProbation(a netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.running[a.Unmap()]
	return ok
}

// AuthSucceeded is called for every SuccessfulAuth from a (a SIP
// registration's authentication). During a probation it learns a when the
// dropped REGISTER's User-Agent matched push.user_agents; otherwise the
// probation ends (a phone that roams is not a push server).
func (p *Probation) AuthSucceeded(ctx context.Context, a netip.Addr, account string) {
	r := p.take(a.Unmap())
	if r == nil {
		return
	}
	if r.stop != nil {
		r.stop()
	}
	if !r.c.pushUA {
		p.outcome(r.c, OutcomeEnded, state.PushEnded, "authenticated, but its User-Agent is not a push server's")
		return
	}
	ev := state.PushEvidence{How: state.HowUserAgent, Account: account, UserAgent: r.c.req.UserAgent, AOR: r.c.req.ToUser,
		FirstSeen: r.c.at, LastSeen: p.o.Clock.Now()}
	if err := p.o.Learner.Learn(ctx, r.c.addr, ev); err != nil {
		p.o.Log.Error("dropwatch: learning a push server failed", p.attrs(r.c, "err", err)...)
		p.outcome(r.c, OutcomeEnded, state.PushEnded, "learning failed")
		return
	}
	p.outcome(r.c, OutcomeLearnedAuth, state.PushLearned, "SuccessfulAuth with a push User-Agent during probation")
}

// AuthFailed is called for every failed authentication (a challenge
// response failed, an unknown account, an ACL) from a. During a probation it
// bans a at once: a push server knows its credentials.
func (p *Probation) AuthFailed(ctx context.Context, a netip.Addr, what string) {
	r := p.take(a.Unmap())
	if r == nil {
		return
	}
	if r.stop != nil {
		r.stop()
	}
	if err := p.o.Gate.Revoke(ctx, r.c.addr); err != nil {
		p.o.Log.Error("dropwatch: ending a probation's admission failed; the kernel timeout still ends it", p.attrs(r.c, "err", err)...)
	}
	p.o.Banner.Ban(ctx, r.c.addr, "failed authentication during push probation ("+what+")")
	p.outcome(r.c, OutcomeBanned, state.PushBanned, what)
}
