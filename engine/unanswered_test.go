package engine

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/engine/failmem"
)

// memReplay feeds events through the engine's classification
// (activity.Source.Observe, observation) into a failure memory, on the
// events' own clock, ticking the challenge timeouts as time passes.
type memReplay struct {
	t        testing.TB
	mem      *failmem.Memory
	srcs     map[netip.Addr]*activity.Source
	verdicts map[netip.Addr][]failmem.Verdict
	last     time.Time
}

func newMemReplay(t testing.TB, mod func(*failmem.Options)) *memReplay {
	o := failmem.DefaultOptions()
	if mod != nil {
		mod(&o)
	}
	m, err := failmem.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &memReplay{t: t, mem: m, srcs: map[netip.Addr]*activity.Source{}, verdicts: map[netip.Addr][]failmem.Verdict{}}
}

func (r *memReplay) note(a netip.Addr, v failmem.Verdict) {
	if v.Ban || v.Flag != "" {
		r.verdicts[a] = append(r.verdicts[a], v)
	}
}

func (r *memReplay) tick(now time.Time) {
	if now.After(r.last) {
		r.mem.Tick(now, r.note)
		r.last = now
	}
}

func (r *memReplay) feed(ev ami.SecurityEvent, at time.Time) failmem.Verdict {
	r.tick(at)
	if !ev.Remote.IsValid() {
		return failmem.Verdict{}
	}
	a := ev.Remote.Addr()
	s := r.srcs[a]
	if s == nil {
		s = &activity.Source{Addr: a}
		r.srcs[a] = s
	}
	k, counted := s.Observe(&ev, at)
	v := r.mem.Observe(a, observation(&ev, k, counted, at))
	r.note(a, v)
	return v
}

// feedAll replays events at their EventTV (events without one at the
// previous event's time), then lets a minute pass.
func (r *memReplay) feedAll(evs []ami.SecurityEvent) {
	at := time.Time{}
	for _, ev := range evs {
		if !ev.Time.IsZero() {
			at = ev.Time
		}
		r.feed(ev, at)
	}
	r.tick(at.Add(time.Minute))
}

// Phones answer their challenges: on every recorded session (the main
// recording, s9, and the forged recording's reference phone) no phone has an
// unanswered challenge, a ban or a note, while the scanner whose spoofed
// INVITE from 1001 (s4) drew a challenge it never answered has one.
func TestRecordedPhonesAnswerChallenges(t *testing.T) {
	r := newMemReplay(t, nil)
	r.feedAll(loadEvents(t, "ami-security-session.raw", recordedMap))
	for _, a := range []string{"198.51.100.21", "198.51.100.22", "203.0.113.31"} {
		addr := netip.MustParseAddr(a)
		if n := r.mem.Unanswered(addr); n != 0 {
			t.Errorf("phone %s: %d unanswered challenges, want 0", a, n)
		}
		if !r.mem.Known(addr, r.last) {
			t.Errorf("phone %s not known after its SuccessfulAuth", a)
		}
		for _, v := range r.verdicts[addr] {
			if v.Ban || v.Flag == failmem.FlagUnanswered {
				t.Errorf("phone %s: verdict %+v", a, v)
			}
		}
	}
	if n := r.mem.Unanswered(netip.MustParseAddr("203.0.113.11")); n != 1 {
		t.Errorf("scanner 203.0.113.11: %d unanswered challenges, want 1 (s4's INVITE from a spoofed 1001)", n)
	}

	f := newMemReplay(t, nil)
	f.feedAll(loadEvents(t, "forged/ami-forged.raw", nil))
	phone := netip.MustParseAddr("198.51.100.62") // ref-wrongthenright: challenge, wrong password, right one
	if n := f.mem.Unanswered(phone); n != 0 || len(f.verdicts[phone]) != 0 {
		t.Errorf("forged/ref phone: %d unanswered, verdicts %+v", n, f.verdicts[phone])
	}
}

// phoneDay generates a day of 200 phones re-registering, each at its own
// interval of 60–3600 s, over a link that loses 1 % of packets either way:
// the REGISTER and its authenticated retry are retransmitted on RFC 3261
// timers (T1 0.5 s doubling to T2 4 s, given up at 32 s); Asterisk raises
// ChallengeSent when the first copy of the REGISTER arrives (its transaction
// layer absorbs the copies, answering each with the same 401) and
// SuccessfulAuth when the first copy of the retry arrives.
func phoneDay(seed uint64) (evs []timedEvent, phones []netip.Addr, lost int) {
	rng := rand.New(rand.NewPCG(seed, seed^0xabcdef))
	lossy := func() bool { return rng.Float64() < 0.01 }
	// transaction returns when the request first arrives and when its
	// response first reaches the phone, after start; ok false if Timer F
	// fired first.
	transaction := func(start time.Duration) (arrive, answered time.Duration, ok bool) {
		arrive = -1
		wait := 500 * time.Millisecond
		for t := start; t < start+32*time.Second; t += wait {
			if !lossy() { // this copy arrives
				if arrive < 0 {
					arrive = t
				}
				if !lossy() { // and its response comes back
					return arrive, t, true
				}
			}
			if t > start {
				wait = min(2*wait, 4*time.Second)
			}
		}
		return arrive, 0, false
	}
	day := 24 * time.Hour
	for p := range 200 {
		var a netip.Addr
		if p < 100 {
			a = netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + p)})
		} else {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(p)})
		}
		phones = append(phones, a)
		account := "2" + strings.Repeat("0", 3-len(itoa(p))) + itoa(p)
		every := 60*time.Second + time.Duration(rng.Int64N(int64(3540*time.Second)))
		for t := time.Duration(rng.Int64N(int64(every))); t < day; t += every {
			arrive, got401, ok := transaction(t)
			if arrive >= 0 {
				evs = append(evs, timedEvent{arrive, phoneEvent(ami.EventChallengeSent, account, a)})
			}
			if !ok {
				lost++
				continue
			}
			arrive2, _, _ := transaction(got401 + 5*time.Millisecond)
			if arrive2 >= 0 {
				evs = append(evs, timedEvent{arrive2, phoneEvent(ami.EventSuccessfulAuth, account, a)})
			} else {
				lost++
			}
		}
	}
	slices.SortStableFunc(evs, func(x, y timedEvent) int { return int(x.at - y.at) })
	return evs, phones, lost
}

type timedEvent struct {
	at time.Duration
	ev ami.SecurityEvent
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func phoneEvent(typ, account string, a netip.Addr) ami.SecurityEvent {
	return ami.SecurityEvent{Type: typ, Service: "PJSIP", Severity: "Informational", EventVersion: "1", AccountID: account,
		SessionID: "reg-" + account, Remote: ami.Address{Transport: "UDP", AddrPort: netip.AddrPortFrom(a, 5060)}}
}

// A synthetic day of 200 phones with 1 % packet loss: no phone accumulates
// an unanswered challenge, a note or a ban.
func TestPhoneDayNoUnansweredChallenges(t *testing.T) {
	evs, phones, lost := phoneDay(20261207)
	if len(evs) < 10000 {
		t.Fatalf("only %d events generated", len(evs))
	}
	start := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	r := newMemReplay(t, nil)
	for _, te := range evs {
		r.feed(te.ev, start.Add(te.at))
	}
	r.tick(start.Add(25 * time.Hour))
	total := 0
	for _, a := range phones {
		total += r.mem.Unanswered(a)
		if vs := r.verdicts[a]; len(vs) > 0 {
			t.Errorf("phone %s: verdicts %+v", a, vs)
		}
	}
	if total != 0 {
		t.Errorf("%d unanswered challenges over the day, want 0", total)
	}
	t.Logf("%d events, %d registrations given up by the phone (Timer F)", len(evs), lost)
}

// Challenges for a real account that are never answered (forged/case4-udp:
// 5 × REGISTER 1001 without auth, as the live scan of 1001 three seconds
// apart) are counted and the source is flagged; at the slow-scan threshold
// (20) it is banned.
func TestUnansweredChallengesFlaggedThenBanned(t *testing.T) {
	all := loadEvents(t, "forged/ami-forged.raw", nil)
	var case4 []ami.SecurityEvent
	for _, ev := range all {
		if p := ev.Remote.AddrPort.Port(); p == 5094 { // case4-udp (cases.tsv, README)
			case4 = append(case4, ev)
		}
	}
	if len(case4) != 5 {
		t.Fatalf("case4: %d events, want 5", len(case4))
	}
	src := netip.MustParseAddr("198.51.100.63")
	r := newMemReplay(t, nil)
	r.feedAll(case4)
	if n := r.mem.Unanswered(src); n != 5 {
		t.Fatalf("unanswered = %d, want 5", n)
	}
	if vs := r.verdicts[src]; len(vs) != 1 || vs[0].Ban || vs[0].Flag != failmem.FlagUnanswered {
		t.Fatalf("verdicts %+v, want one unanswered-challenges note", vs)
	}
	// The same scan four times over, an hour apart: the 20th unanswered
	// challenge bans.
	for round := 1; round < 4; round++ {
		for _, ev := range case4 {
			ev.Time = ev.Time.Add(time.Duration(round) * time.Hour)
			r.feed(ev, ev.Time)
		}
		r.tick(case4[4].Time.Add(time.Duration(round)*time.Hour + time.Minute))
	}
	vs := r.verdicts[src]
	if len(vs) < 2 || !vs[len(vs)-1].Ban || !strings.Contains(vs[len(vs)-1].Reason, "slow scan: 20 unanswered challenges") {
		t.Fatalf("verdicts %+v, want a slow-scan ban", vs)
	}
}
