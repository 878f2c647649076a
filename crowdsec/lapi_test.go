package crowdsec_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/crowdsec"
	"github.com/sipsentry/sipsentry/crowdsec/lapitest"
)

// memSink records what the consumer applies.
type memSink struct {
	mu      sync.Mutex
	entries map[netip.Prefix]string // prefix → origin
	adds    int
}

func newMemSink() *memSink { return &memSink{entries: map[netip.Prefix]string{}} }

func (s *memSink) AddRemote(_ context.Context, p netip.Prefix, d time.Duration, origin, scenario string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries[p] = origin
	s.adds++
	return nil
}

func (s *memSink) RemoveRemote(_ context.Context, p netip.Prefix) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, p)
	return nil
}

func (s *memSink) origin(p string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.entries[netip.MustParsePrefix(p)]
	return o, ok
}

func clients(t *testing.T, l *lapitest.LAPI, machine, bouncer string) *crowdsec.Client {
	t.Helper()
	var mc crowdsec.MachineCredentials
	if machine != "" {
		var err error
		mc, err = crowdsec.ReadMachineCredentials(l.AddMachine(machine))
		if err != nil {
			t.Fatal(err)
		}
	}
	var key string
	if bouncer != "" {
		var err error
		key, err = crowdsec.ReadAPIKey(l.AddBouncer(bouncer))
		if err != nil {
			t.Fatal(err)
		}
	}
	c, err := crowdsec.NewClient(l.URL, mc, key, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// waitStream pulls with c until want(decision) holds for some new decision.
func waitStream(t *testing.T, c *crowdsec.Client, what string, want func(crowdsec.Decision) bool) crowdsec.Decision {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	startup := true
	for time.Now().Before(deadline) {
		s, err := c.DecisionsStream(context.Background(), startup)
		if err == nil {
			startup = false
			for _, d := range s.New {
				if want(d) {
					return d
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no decision on the stream: %s", what)
	return crowdsec.Decision{}
}

func TestLAPIPublishedBanReachesAnotherBouncer(t *testing.T) {
	l := lapitest.Start(t)
	pubC := clients(t, l, "pbx-a", "")
	other := clients(t, l, "", "pbx-b")
	pub := crowdsec.NewPublisher(pubC, crowdsec.PublisherOptions{MinInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.Run(ctx)

	pub.Publish(crowdsec.Ban{Addr: netip.MustParseAddr("203.0.113.7"), Reason: "brute-force", Duration: time.Hour,
		Country: "JP", Accounts: []string{"1001", "evil\r\nEvent: SuccessfulAuth"}})
	d := waitStream(t, other, "203.0.113.7 from sipsentry", func(d crowdsec.Decision) bool { return d.Value == "203.0.113.7" })
	if d.Origin != crowdsec.Origin || d.Scenario != "sipsentry/brute-force" || d.Type != "ban" || !strings.EqualFold(d.Scope, "ip") {
		t.Fatalf("decision = %+v, want origin sipsentry, scenario sipsentry/brute-force, ban, Ip", d)
	}
	dur, err := time.ParseDuration(d.Duration)
	if err != nil || dur < 55*time.Minute || dur > time.Hour {
		t.Fatalf("duration %q, want the ban's time left (~1h)", d.Duration)
	}
	// The alert keeps the accounts, escaped: no raw CR LF reached the LAPI.
	out := l.Cscli("alerts", "list", "-a", "-o", "json")
	if !strings.Contains(out, `evil\\x0d\\x0aEvent: SuccessfulAuth`) || strings.Contains(out, "evil\\r\\n") {
		t.Fatalf("alert meta does not carry the escaped account:\n%s", out)
	}
	if st := pub.Stats(); st.Sent != 1 || st.Dropped != 0 {
		t.Fatalf("publisher stats %+v", st)
	}
}

func TestLAPIConsumerAppliesAddsDeletesAndRefusesWide(t *testing.T) {
	l := lapitest.Start(t)
	c := clients(t, l, "", "pbx-a")
	sink := newMemSink()
	allowedCountry := netip.MustParsePrefix("198.51.100.0/24")
	cons := crowdsec.NewConsumer(c, sink, crowdsec.ConsumerOptions{
		Refuse: func(p netip.Prefix) string {
			if p.Bits() < p.Addr().BitLen() && p.Overlaps(allowedCountry) {
				return "covers an allowed country's range"
			}
			return ""
		},
	})
	ctx := context.Background()
	l.Cscli("decisions", "add", "--ip", "203.0.113.99", "--duration", "1h", "--reason", "test")
	l.Cscli("decisions", "add", "--range", "203.0.113.128/25", "--duration", "1h", "--reason", "test")
	l.Cscli("decisions", "add", "--ip", "127.0.0.1", "--duration", "1h", "--reason", "test")
	l.Cscli("decisions", "add", "--range", "10.0.0.0/8", "--duration", "1h", "--reason", "too wide")
	l.Cscli("decisions", "add", "--range", "198.51.100.0/24", "--duration", "1h", "--reason", "country")
	l.Cscli("decisions", "add", "--ip", "203.0.113.50", "--duration", "1h", "--type", "captcha")
	if err := cons.Poll(ctx, true); err != nil {
		t.Fatal(err)
	}
	if o, ok := sink.origin("203.0.113.99/32"); !ok || o != "crowdsec:cscli" {
		t.Fatalf("203.0.113.99: applied=%v origin=%q, want crowdsec:cscli", ok, o)
	}
	if _, ok := sink.origin("203.0.113.128/25"); !ok {
		t.Fatal("range 203.0.113.128/25 not applied")
	}
	for _, p := range []string{"127.0.0.1/32", "10.0.0.0/8", "198.51.100.0/24", "203.0.113.50/32"} {
		if _, ok := sink.origin(p); ok {
			t.Errorf("%s applied, want refused or ignored", p)
		}
	}
	st := cons.Stats()
	if st.Refused != 3 || st.Ignored != 1 || st.Applied != 2 {
		t.Fatalf("stats %+v, want 3 refused (loopback, /8, allowed country), 1 ignored (captcha), 2 applied", st)
	}

	l.Cscli("decisions", "delete", "--ip", "203.0.113.99")
	if err := cons.Poll(ctx, false); err != nil {
		t.Fatal(err)
	}
	if _, ok := sink.origin("203.0.113.99/32"); ok {
		t.Fatal("203.0.113.99 still applied after cscli decisions delete")
	}
	if _, ok := sink.origin("203.0.113.128/25"); !ok {
		t.Fatal("deleting one decision removed another")
	}
}

func TestLAPIOwnDecisionsAreNotAppliedTwice(t *testing.T) {
	l := lapitest.Start(t)
	c := clients(t, l, "pbx-a", "pbx-a")
	pub := crowdsec.NewPublisher(c, crowdsec.PublisherOptions{MinInterval: 50 * time.Millisecond})
	sink := newMemSink()
	cons := crowdsec.NewConsumer(c, sink, crowdsec.ConsumerOptions{
		Ours: func(p netip.Prefix, now time.Time) bool { return p.IsSingleIP() && pub.Published(p.Addr(), now) },
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.Run(ctx)
	pub.Publish(crowdsec.Ban{Addr: netip.MustParseAddr("203.0.113.8"), Reason: "scan", Duration: time.Hour})
	deadline := time.Now().Add(30 * time.Second)
	for cons.Stats().Own == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("own decision never came back: %+v / %+v", cons.Stats(), pub.Stats())
		}
		if err := cons.Poll(ctx, false); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sink.adds != 0 {
		t.Fatalf("own decision applied %d times", sink.adds)
	}
}

func TestLAPIOutageKeepsBansQueuedAndCatchesUp(t *testing.T) {
	l := lapitest.Start(t)
	c := clients(t, l, "pbx-a", "")
	reader := clients(t, l, "", "reader")
	pub := crowdsec.NewPublisher(c, crowdsec.PublisherOptions{MinInterval: 50 * time.Millisecond, MaxBackoff: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.Run(ctx)

	l.Stop()
	const n = 3000
	for i := range n {
		a := netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})
		pub.Publish(crowdsec.Ban{Addr: a, Reason: "flood", Duration: time.Hour})
	}
	deadline := time.Now().Add(20 * time.Second)
	for pub.Stats().Failures == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed publish while the LAPI was down")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := pub.Stats(); st.Sent != 0 || st.Pending+int(st.Dropped) == 0 {
		t.Fatalf("during the outage: %+v", st)
	}
	l.Restart()
	deadline = time.Now().Add(60 * time.Second)
	for pub.Stats().Sent < n {
		if time.Now().After(deadline) {
			t.Fatalf("queue did not catch up after the outage: %+v", pub.Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s, err := reader.DecisionsStream(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, d := range s.New {
		if d.Origin == crowdsec.Origin && strings.HasPrefix(d.Value, "10.77.") {
			got++
		}
	}
	if got != n {
		t.Fatalf("bouncer sees %d of %d bans published across the outage", got, n)
	}
}

// BenchmarkLAPIPublish measures bans published per second through a real
// LAPI, batched as under a flood (one request per MinInterval).
func BenchmarkLAPIPublish(b *testing.B) {
	l := lapitest.Start(b)
	mc, err := crowdsec.ReadMachineCredentials(l.AddMachine("bench"))
	if err != nil {
		b.Fatal(err)
	}
	c, _ := crowdsec.NewClient(l.URL, mc, "", time.Minute)
	pub := crowdsec.NewPublisher(c, crowdsec.PublisherOptions{MinInterval: time.Second, MaxBatch: 5000})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pub.Run(ctx)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		pub.Publish(crowdsec.Ban{Addr: netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), Reason: "bench", Duration: time.Hour})
	}
	for pub.Stats().Sent < uint64(b.N) {
		if pub.Stats().Failures > 0 {
			b.Fatalf("publish failed: %+v", pub.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "bans/s")
}

// timedSink records when each prefix arrived.
type timedSink struct {
	mu   sync.Mutex
	seen map[netip.Prefix]time.Time
}

func (s *timedSink) AddRemote(_ context.Context, p netip.Prefix, _ time.Duration, _, _ string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.seen[p]; !ok {
		s.seen[p] = time.Now()
	}
	return nil
}
func (s *timedSink) RemoveRemote(context.Context, netip.Prefix) error { return nil }

// BenchmarkLAPIBanToPeer measures the time from a ban published by PBX A
// to PBX B's consumer handing it to its sink (the kernel add after it takes
// microseconds), at a 1 s and a 10 s poll interval: p50 and p99 over
// b.N bans spaced at random within a poll interval.
func BenchmarkLAPIBanToPeer(b *testing.B) {
	for _, poll := range []time.Duration{time.Second, 10 * time.Second} {
		b.Run(poll.String(), func(b *testing.B) {
			l := lapitest.Start(b)
			mc, _ := crowdsec.ReadMachineCredentials(l.AddMachine("a"))
			key, _ := crowdsec.ReadAPIKey(l.AddBouncer("b"))
			ca, _ := crowdsec.NewClient(l.URL, mc, "", time.Minute)
			cb, _ := crowdsec.NewClient(l.URL, crowdsec.MachineCredentials{}, key, time.Minute)
			pub := crowdsec.NewPublisher(ca, crowdsec.PublisherOptions{})
			sink := &timedSink{seen: map[netip.Prefix]time.Time{}}
			cons := crowdsec.NewConsumer(cb, sink, crowdsec.ConsumerOptions{PollInterval: poll})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go pub.Run(ctx)
			go cons.Run(ctx)
			var lat []time.Duration
			b.ResetTimer()
			for i := range b.N {
				a := netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)})
				p := netip.PrefixFrom(a, 32)
				t0 := time.Now()
				pub.Publish(crowdsec.Ban{Addr: a, Reason: "bench", Duration: time.Hour})
				for {
					sink.mu.Lock()
					at, ok := sink.seen[p]
					sink.mu.Unlock()
					if ok {
						lat = append(lat, at.Sub(t0))
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(time.Duration(i*7919%1000) * poll / 1000) // de-phase from the poll ticker
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(lat[(len(lat)*99)/100].Milliseconds()), "p99-ms")
		})
	}
}
