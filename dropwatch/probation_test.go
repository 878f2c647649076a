package dropwatch

import (
	"context"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sipsentry/sipsentry/dropwatch/sip"
	"github.com/sipsentry/sipsentry/state"
)

// ---- fakes for what the Probation needs

type fakeClock struct {
	mu     sync.Mutex // guards now, timers
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// advance moves the clock and runs the timers that came due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []func()
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range due {
		f()
	}
}

type fakeResolver map[netip.Addr]string

func (r fakeResolver) ConfirmedName(_ context.Context, a netip.Addr) (string, error) {
	return r[a], nil
}

type recorder struct {
	mu    sync.Mutex // guards calls
	calls []string
}

func (r *recorder) add(s string) { r.mu.Lock(); r.calls = append(r.calls, s); r.mu.Unlock() }
func (r *recorder) list() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, "; ")
}

func (r *recorder) AdmitSIP(_ context.Context, a netip.Addr, d time.Duration) error {
	r.add("admit " + a.String() + " " + d.String())
	return nil
}
func (r *recorder) Revoke(_ context.Context, a netip.Addr) error {
	r.add("revoke " + a.String())
	return nil
}
func (r *recorder) Ban(_ context.Context, a netip.Addr, reason string) {
	r.add("ban " + a.String() + " " + reason)
}
func (r *recorder) Learn(_ context.Context, a netip.Addr, ev state.PushEvidence) error {
	r.add("learn " + a.String() + " " + ev.How + " " + ev.PTR + ev.UserAgent)
	return nil
}

type world struct {
	p      *Probation
	clock  *fakeClock
	rec    *recorder
	dns    fakeResolver
	states []string
}

func newWorld(t *testing.T, mod func(*ProbationOptions)) *world {
	w := &world{clock: &fakeClock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}, rec: &recorder{}, dns: fakeResolver{}}
	o := ProbationOptions{
		Policy: Policy{UserAgents: []*regexp.Regexp{regexp.MustCompile(`(?i)^Bria Push`)},
			Domains: []string{"softphone.com"}, Duration: time.Minute, MaxPerHour: 10},
		Resolver: w.dns, Gate: w.rec, Banner: w.rec, Learner: w.rec, Clock: w.clock,
	}
	if mod != nil {
		mod(&o)
	}
	w.p = NewProbation(o)
	w.p.onState = func(a netip.Addr, st string, _ time.Time) { w.states = append(w.states, a.String()+" "+st) }
	return w
}

// consider offers a dropped REGISTER and lets Run's step examine it.
func (w *world) consider(a netip.Addr, req sip.Request) {
	w.p.Consider(a, req, "XX")
	select {
	case c := <-w.p.queue:
		w.p.examine(context.Background(), c)
	default:
	}
}

var (
	pushServer = netip.MustParseAddr("203.0.113.66")
	pushReq    = sip.Request{Method: "REGISTER", FromUser: "1001", ToUser: "1001", UserAgent: "Bria Push Service",
		Push: sip.PNProvider | sip.PNPrid | sip.PNParam}
)

func (w *world) want(t *testing.T, calls string, states ...string) {
	t.Helper()
	if got := w.rec.list(); got != calls {
		t.Errorf("calls:\n got %q\nwant %q", got, calls)
	}
	if got := strings.Join(w.states, ", "); got != strings.Join(states, ", ") {
		t.Errorf("states:\n got %q\nwant %q", got, strings.Join(states, ", "))
	}
}

func outcomes(p *Probation, o string) float64 {
	return testutil.ToFloat64(p.outcomes.WithLabelValues(o))
}

func TestProbationFCrDNSLearnsAtOnce(t *testing.T) {
	w := newWorld(t, nil)
	w.dns[pushServer] = "push-new.softphone.com."
	w.consider(pushServer, pushReq)
	w.want(t, "learn 203.0.113.66 ptr push-new.softphone.com.Bria Push Service", "203.0.113.66 candidate", "203.0.113.66 learned")
	if outcomes(w.p, OutcomeLearnedPTR) != 1 || testutil.ToFloat64(w.p.candidates) != 1 || testutil.ToFloat64(w.p.probations) != 0 {
		t.Error("counters")
	}
}

func TestProbationLearnsOnAuth(t *testing.T) {
	w := newWorld(t, nil)
	w.dns[pushServer] = "evil.example." // a PTR outside push.domains earns nothing
	w.consider(pushServer, pushReq)
	if !w.p.OnProbation(pushServer) {
		t.Fatal("not on probation")
	}
	w.clock.advance(20 * time.Second)
	w.p.AuthSucceeded(context.Background(), pushServer, "1001")
	w.want(t, "admit 203.0.113.66 1m0s; learn 203.0.113.66 user_agent Bria Push Service",
		"203.0.113.66 candidate", "203.0.113.66 probation", "203.0.113.66 learned")
	w.clock.advance(time.Minute) // the silence timer was stopped: no second outcome
	if outcomes(w.p, OutcomeLearnedAuth) != 1 || outcomes(w.p, OutcomeEnded) != 0 || testutil.ToFloat64(w.p.probations) != 1 {
		t.Error("counters")
	}
}

func TestProbationFailureBans(t *testing.T) {
	w := newWorld(t, nil)
	w.consider(pushServer, pushReq)
	w.p.AuthSucceeded(context.Background(), netip.MustParseAddr("203.0.113.67"), "1001") // someone else
	w.p.AuthFailed(context.Background(), pushServer, "ChallengeResponseFailed")
	w.p.AuthSucceeded(context.Background(), pushServer, "1001") // too late: the probation is over
	w.want(t, "admit 203.0.113.66 1m0s; revoke 203.0.113.66; ban 203.0.113.66 failed authentication during push probation (ChallengeResponseFailed)",
		"203.0.113.66 candidate", "203.0.113.66 probation", "203.0.113.66 banned")
	if outcomes(w.p, OutcomeBanned) != 1 {
		t.Error("counter")
	}
}

func TestProbationSilenceEnds(t *testing.T) {
	w := newWorld(t, nil)
	w.consider(pushServer, pushReq)
	w.clock.advance(59 * time.Second)
	if !w.p.OnProbation(pushServer) {
		t.Fatal("ended early")
	}
	w.clock.advance(time.Second)
	if w.p.OnProbation(pushServer) {
		t.Fatal("still on probation after push.probation")
	}
	// No revoke: the kernel timeout ends the admission, and an allow the
	// engine learned meanwhile must not be removed.
	w.want(t, "admit 203.0.113.66 1m0s", "203.0.113.66 candidate", "203.0.113.66 probation", "203.0.113.66 ended")
	w.p.AuthFailed(context.Background(), pushServer, "late") // after the end: not banned by the probation
	w.want(t, "admit 203.0.113.66 1m0s", "203.0.113.66 candidate", "203.0.113.66 probation", "203.0.113.66 ended")
}

func TestProbationOncePerAddressPerDay(t *testing.T) {
	w := newWorld(t, nil)
	w.consider(pushServer, pushReq)
	w.clock.advance(time.Minute)
	w.consider(pushServer, pushReq) // the retry an hour later...
	w.clock.advance(23 * time.Hour)
	w.consider(pushServer, pushReq) // ...and 23 h later: still the same day's chance
	if n := testutil.ToFloat64(w.p.candidates); n != 1 {
		t.Fatalf("%v candidates within a day, want 1", n)
	}
	w.clock.advance(time.Hour)
	w.consider(pushServer, pushReq)
	if n := testutil.ToFloat64(w.p.probations); n != 2 {
		t.Fatalf("%v probations after a day, want 2", n)
	}
}

func TestProbationHourlyCap(t *testing.T) {
	w := newWorld(t, func(o *ProbationOptions) { o.MaxPerHour = 2 })
	for i := 1; i <= 3; i++ {
		w.consider(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), pushReq)
	}
	if testutil.ToFloat64(w.p.probations) != 2 || outcomes(w.p, OutcomeRefused) != 1 {
		t.Fatalf("probations %v refused %v, want 2 and 1", testutil.ToFloat64(w.p.probations), outcomes(w.p, OutcomeRefused))
	}
	// The refused one retries (as push servers do): refused again within
	// the hour, but not locked out for the day.
	third := netip.AddrFrom4([4]byte{203, 0, 113, 3})
	w.clock.advance(5 * time.Minute)
	w.consider(third, pushReq)
	if outcomes(w.p, OutcomeRefused) != 1 {
		t.Fatal("reconsidered within 10 minutes of its refusal")
	}
	w.clock.advance(6 * time.Minute)
	w.consider(third, pushReq)
	if outcomes(w.p, OutcomeRefused) != 2 {
		t.Fatal("not reconsidered 10 minutes after its refusal")
	}
	w.clock.advance(time.Hour)
	w.consider(third, pushReq)
	if testutil.ToFloat64(w.p.probations) != 3 || !w.p.OnProbation(third) {
		t.Fatal("the cap did not reopen after an hour for the refused candidate")
	}
}

func TestProbationDisabled(t *testing.T) {
	w := newWorld(t, func(o *ProbationOptions) { o.Duration = 0 })
	w.consider(pushServer, pushReq)
	w.want(t, "", "203.0.113.66 candidate", "203.0.113.66 refused")
	// FCrDNS still learns with probation off.
	w.dns[netip.MustParseAddr("203.0.113.9")] = "push-as.softphone.com"
	w.consider(netip.MustParseAddr("203.0.113.9"), pushReq)
	if outcomes(w.p, OutcomeLearnedPTR) != 1 {
		t.Fatal("FCrDNS did not learn with probation off")
	}
}

func TestProbationCandidates(t *testing.T) {
	w := newWorld(t, func(o *ProbationOptions) { o.AORExists = func(u string) bool { return u == "1001" } })
	for name, req := range map[string]sip.Request{
		"scanner":                           {Method: "REGISTER", ToUser: "100", UserAgent: "friendly-scanner"},
		"INVITE with a push UA":             {Method: "INVITE", ToUser: "1001", UserAgent: "Bria Push Service"},
		"push parameters for an absent AOR": {Method: "REGISTER", ToUser: "9999", UserAgent: "x", Push: sip.PNPrid},
	} {
		w.consider(netip.MustParseAddr("203.0.113.50"), req)
		if testutil.ToFloat64(w.p.candidates) != 0 {
			t.Fatalf("%s became a candidate", name)
		}
	}
	// Push parameters for an existing AOR, with a phone's UA: a candidate,
	// on probation, but its SuccessfulAuth is not a push server's.
	phone := sip.Request{Method: "REGISTER", ToUser: "1001", UserAgent: "Bria iOS release 6.5.4", Push: sip.PNProvider}
	w.consider(pushServer, phone)
	w.p.AuthSucceeded(context.Background(), pushServer, "1001")
	w.want(t, "admit 203.0.113.66 1m0s", "203.0.113.66 candidate", "203.0.113.66 probation", "203.0.113.66 ended")
}

func TestInDomains(t *testing.T) {
	for name, want := range map[string]bool{
		"push-as.softphone.com.": true, "SOFTPHONE.COM": true, "evilsoftphone.com": false,
		"softphone.com.evil.example": false, "": false,
	} {
		if inDomains(name, []string{"softphone.com"}) != want {
			t.Errorf("inDomains(%q) != %v", name, want)
		}
	}
}

// TestProbationOverflowBounded: forged candidates beyond the queue are
// refused and counted, and logged at most once a minute.
func TestProbationOverflowBounded(t *testing.T) {
	var logs strings.Builder
	w := newWorld(t, func(o *ProbationOptions) { o.Log = slog.New(slog.NewTextHandler(&logs, nil)) })
	for i := range candidateQueue + 500 {
		w.p.Consider(netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}), pushReq, "XX")
	}
	if got := outcomes(w.p, OutcomeRefused); got != 500 {
		t.Fatalf("%v refused, want 500 (the queue holds %d)", got, candidateQueue)
	}
	if n := strings.Count(logs.String(), "no room"); n != 1 {
		t.Fatalf("%d overflow warnings for 500 refusals in the same minute, want 1", n)
	}
	for len(w.p.queue) > 0 {
		w.p.examine(context.Background(), <-w.p.queue)
	}
	if n := strings.Count(logs.String(), "push candidate:"); n != candidateQueue {
		t.Fatalf("%d candidate lines, want %d (the queued ones)", n, candidateQueue)
	}
}

// TestProbationSetPolicy: a reload's push.* applies to the next candidates.
func TestProbationSetPolicy(t *testing.T) {
	w := newWorld(t, nil)
	w.p.SetPolicy(Policy{UserAgents: []*regexp.Regexp{regexp.MustCompile(`^NewPush`)}, Duration: 2 * time.Minute, MaxPerHour: 1})
	w.consider(pushServer, sip.Request{Method: "REGISTER", UserAgent: "Bria Push Service"}) // no longer a push UA
	w.consider(netip.MustParseAddr("203.0.113.7"), sip.Request{Method: "REGISTER", UserAgent: "NewPush 1.0"})
	w.consider(netip.MustParseAddr("203.0.113.8"), sip.Request{Method: "REGISTER", UserAgent: "NewPush 1.0"})
	w.want(t, "admit 203.0.113.7 2m0s", "203.0.113.7 candidate", "203.0.113.7 probation", "203.0.113.8 candidate", "203.0.113.8 refused")
}
