package engine

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/state"
)

// forgedAt returns the forged case's events moved to victim's address and
// to the rig's clock (their own times keep their spacing for the nonce
// check: EventTV is Asterisk's clock, the rig's clock is the engine's).
func forgedAt(t *testing.T, name string, victim netip.Addr) []ami.SecurityEvent {
	t.Helper()
	for _, c := range forgedCases(t) {
		if c.name == name {
			out := make([]ami.SecurityEvent, len(c.evs))
			for i, ev := range c.evs {
				ev.Remote.AddrPort = netip.AddrPortFrom(victim, ev.Remote.AddrPort.Port())
				out[i] = ev
			}
			return out
		}
	}
	t.Fatalf("no forged case %s", name)
	return nil
}

// Through the engine: a phone that authenticated is not banned by the
// forged UDP cases (flagged, with the blind evidence noted in the store),
// and is banned by the TCP case; an address that never authenticated is
// banned by the first UDP case, as before.
func TestEngineForgedFailuresAgainstAKnownPhone(t *testing.T) {
	r := newRig(t, rigOpt{})
	phone := netip.MustParseAddr("203.0.113.40")
	r.eng.Handle(context.Background(), ev(ami.EventChallengeSent, "1001", phone.String(), "reg"))
	r.eng.Handle(context.Background(), ev(ami.EventSuccessfulAuth, "1001", phone.String(), "reg"))
	r.clock.Advance(time.Hour)
	for _, c := range []string{"case1-udp", "case2-udp", "case3-udp", "case5a-udp-from7777", "case6-udp-blindpair-v2"} {
		r.feed(forgedAt(t, c, phone))
		if r.banned(phone.String()) {
			t.Fatalf("known phone banned by forged %s", c)
		}
	}
	r.sync()
	fs, err := r.store.Flags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, f := range fs {
		if f.Addr == phone {
			kinds[f.Kind] = true
		}
	}
	if !kinds[FlagKnownFailures] || !kinds[FlagBlind] {
		t.Errorf("flags %+v: want the known-address and blind-evidence notes", fs)
	}
	if !strings.Contains(r.logs.String(), "forged or a shared NAT?") {
		t.Error("known-address note not logged")
	}
	r.feed(forgedAt(t, "case1-tcp", phone))
	if !r.banned(phone.String()) {
		t.Fatal("known phone not banned by 5 failures over TCP")
	}

	stranger := netip.MustParseAddr("203.0.113.41")
	evs := forgedAt(t, "case1-udp", stranger)
	for i, e := range evs {
		r.eng.Handle(context.Background(), e)
		if got := r.banned(stranger.String()); got != (i == len(evs)-1) {
			t.Fatalf("unknown address after forged event %d: banned %v", i+1, got)
		}
	}
}

// Unanswered challenges reach a ban through the engine's own ticker, with
// no later event from the source: 20 REGISTERs for 1001, 3 s apart, never
// answered (the live slow scan that was invisible).
func TestEngineUnansweredChallengesBanned(t *testing.T) {
	r := newRig(t, rigOpt{noRun: true})
	src := "203.0.113.42"
	for i := range 20 {
		r.eng.Handle(context.Background(), ev(ami.EventChallengeSent, "1001", src, "scan"+strconv.Itoa(i)))
		r.clock.Advance(3 * time.Second)
		r.eng.tickFailures(context.Background())
	}
	r.clock.Advance(time.Minute)
	r.eng.tickFailures(context.Background())
	if !r.banned(src) {
		t.Fatal("20 unanswered challenges not banned")
	}
	d := r.eng.Snapshot()
	if d.Decisions[DecisionFlagged] == 0 {
		t.Errorf("decisions %v: the unanswered-challenges note is missing", d.Decisions)
	}
	last := d.Recent[len(d.Recent)-1]
	if last.Kind != DecisionBan || !strings.Contains(last.Reason, "unanswered challenges") {
		t.Errorf("last decision %+v", last)
	}
}

// The report's aggregates are evicted under a flood (MaxSources 100); the
// failure memory is not: a source four failures in is banned at its fifth
// after 20,000 one-shot sources came in between.
func TestEngineFailuresSurviveAggregateEviction(t *testing.T) {
	r := newRig(t, rigOpt{noRun: true, cfg: func(c *Options) { c.MaxSources = 100; c.EnumAccounts = 0 }})
	src := "203.0.113.43"
	for i := range 4 {
		r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", src, strconv.Itoa(i)))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", randomSource(rng).String(), "x"))
	}
	st := r.eng.Snapshot()
	if st.Evicted < 19000 {
		t.Fatalf("only %d aggregates evicted: the flood did not push the source out", st.Evicted)
	}
	if fm := st.FailureMemory; fm.Tracked < 20000 || fm.Evicted != 0 || fm.Bytes == 0 {
		t.Fatalf("failure memory %+v: want every source tracked, none evicted", fm)
	}
	r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", src, "5"))
	if !r.banned(src) {
		t.Fatal("5th failure after the flood did not ban: the failures were forgotten")
	}
}

// Known addresses are restored from the state DB at start: after a restart
// the phone's successful auth still protects it from forged UDP failures.
func TestKnownSeededFromStore(t *testing.T) {
	clock := newClock()
	dbPath := t.TempDir() + "/" + state.FileName
	r1 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	phone := netip.MustParseAddr("203.0.113.44")
	r1.eng.Handle(context.Background(), ev(ami.EventSuccessfulAuth, "1001", phone.String(), "reg"))
	r1.sync()
	r1.stop()
	clock.Advance(24 * time.Hour)
	r2 := newRig(t, rigOpt{clock: clock, dbPath: dbPath})
	r2.feed(forgedAt(t, "case1-udp", phone))
	if r2.banned(phone.String()) {
		t.Fatal("phone banned by forged UDP failures after a restart: its known status was not restored")
	}
	if !strings.Contains(r2.logs.String(), "known addresses restored") {
		t.Error("restore of known addresses not logged")
	}
}

// Under a flood the event log keeps eventLogRate rows a second, every row
// that carries a decision, and counts the rest as dropped writes.
func TestEventLogSampledUnderFlood(t *testing.T) {
	r := newRig(t, rigOpt{noRun: true, cfg: func(c *Options) { c.EnumAccounts = 0 }})
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 3000
	for i := range n {
		src := randomSource(rng).String()
		if i == n-1 {
			src = "203.0.113.45"
			for j := range 4 {
				r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", src, strconv.Itoa(j)))
			}
		}
		r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", src, "x"))
	}
	rows := len(r.eng.sources.eventRows)
	dropped := r.eng.Snapshot().DroppedWrites
	if rows != eventLogRate+1 || uint64(rows)+dropped != n+4 {
		t.Fatalf("%d rows kept, %d dropped; want %d (the budget and the ban's row), the rest dropped", rows, dropped, eventLogRate+1)
	}
	if last := r.eng.sources.eventRows[rows-1]; !strings.Contains(last.Decision, "5 failures") {
		t.Errorf("last row %+v: the ban's row was sampled out", last)
	}
}

// A successful login during a flood keeps its event-log row: known
// addresses are restored from those rows at the next start.
func TestAuthRowKeptUnderFlood(t *testing.T) {
	r := newRig(t, rigOpt{noRun: true})
	rng := rand.New(rand.NewPCG(7, 8))
	for range eventLogRate + 10 {
		r.eng.Handle(context.Background(), ev(ami.EventInvalidAccountID, "u", randomSource(rng).String(), ""))
	}
	r.eng.Handle(context.Background(), ev(ami.EventSuccessfulAuth, "1001", "203.0.113.46", "reg"))
	rows := r.eng.sources.eventRows
	if last := rows[len(rows)-1]; last.Kind != "auth_ok" || last.Addr != netip.MustParseAddr("203.0.113.46") {
		t.Fatalf("last row %+v: the login's row was sampled out", last)
	}
}

// A ban burst keeps decisionLogRate decision rows a second in the event
// log (the rest counted as dropped writes), and every ban, sampled or not,
// reaches the bans table.
func TestDecisionRowsSampledBansKept(t *testing.T) {
	const n = 3 * decisionLogRate
	r := newRig(t, rigOpt{maxElem: 2 * n, cfg: func(c *Options) { c.GeoMode = GeoStrict; c.BanMaxElem = 2 * n }})
	rng := rand.New(rand.NewPCG(7, 8))
	seen := map[string]bool{}
	for len(seen) < n {
		src := randomSource(rng).String()
		if seen[src] {
			continue
		}
		seen[src] = true
		r.eng.Handle(context.Background(), ev(ami.EventChallengeResponseFailed, "1001", src, "x"))
	}
	r.sync()
	bans, err := r.store.ActiveBans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := r.store.Events(context.Background(), 10*n)
	if err != nil {
		t.Fatal(err)
	}
	decided := 0
	for _, e := range evs {
		if e.Decision != "" {
			decided++
		}
	}
	if len(bans) != n {
		t.Fatalf("%d bans in the DB, want every one of %d", len(bans), n)
	}
	if decided != decisionLogRate {
		t.Fatalf("%d decision rows in the event log, want %d (one second's budget)", decided, decisionLogRate)
	}
	if d := r.eng.Snapshot().DroppedWrites; d < uint64(n-decisionLogRate) {
		t.Errorf("dropped writes %d, want at least %d", d, n-decisionLogRate)
	}
}
