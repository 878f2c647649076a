package crowdsec

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestScenarioAndEscape(t *testing.T) {
	for in, want := range map[string]string{
		"brute-force": "sipsentry/brute-force", "Geo Strict": "sipsentry/geo-strict",
		"injection": "sipsentry/injection", "": "sipsentry/ban", "../../x\r\n": "sipsentry/x",
	} {
		if got := Scenario(in); got != want {
			t.Errorf("Scenario(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"1001": "1001", "a\r\nEvent: x": `a\x0d\x0aEvent: x`, "back\\slash": `back\x5cslash`,
		"\xff": `\xff`, "日本": "日本",
	} {
		if got := Escape(in, 64); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := Escape(strings.Repeat("\n", 100), 16); len(got) > 16 {
		t.Errorf("Escape did not cap: %d bytes", len(got))
	}
}

func TestRemoteDecisionRefusals(t *testing.T) {
	c := NewConsumer(nil, nil, ConsumerOptions{})
	for _, tc := range []struct {
		scope, value string
		refused      bool
	}{
		{"Ip", "203.0.113.5", false},
		{"Range", "203.0.113.0/24", false},
		{"Range", "198.51.0.0/16", false},
		{"Range", "198.0.0.0/15", true},
		{"Range", "0.0.0.0/0", true},
		{"Range", "::/0", true},
		{"Range", "2001:db8::/32", false},
		{"Range", "2001:db8::/31", true},
		{"Ip", "127.0.0.1", true},
		{"Ip", "::1", true},
		{"Ip", "0.0.0.0", true},
		{"Ip", "255.255.255.255", true},
		{"Ip", "224.0.0.1", true},
		{"Ip", "fe80::1", true},
		{"Ip", "::ffff:203.0.113.9", false},
	} {
		p, err := ParseDecision(Decision{Scope: tc.scope, Value: tc.value})
		if err != nil {
			t.Fatalf("%s %s: %v", tc.scope, tc.value, err)
		}
		if why := c.refusal(p); (why != "") != tc.refused {
			t.Errorf("%s %s: refusal %q, want refused=%v", tc.scope, tc.value, why, tc.refused)
		}
	}
	for _, bad := range []Decision{{Scope: "Ip", Value: "203.0.113.5/24"}, {Scope: "Country", Value: "JP"},
		{Scope: "Range", Value: "nonsense"}, {Scope: "Ip", Value: "fe80::1%eth0"}} {
		if _, err := ParseDecision(bad); err == nil {
			t.Errorf("ParseDecision(%+v) accepted", bad)
		}
	}
}

// fakeLAPI answers login and alerts; down makes alerts fail with 503.
type fakeLAPI struct {
	mu       sync.Mutex
	down     bool
	block    chan struct{}
	requests int
	alerts   []Alert
}

func (f *fakeLAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/watchers/login":
		_ = json.NewEncoder(w).Encode(loginAnswer{Code: 200, Token: "t", Expire: time.Now().Add(time.Hour).Format(time.RFC3339)})
	case "/v1/alerts":
		if f.block != nil {
			<-f.block
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests++
		if f.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var as []Alert
		_ = json.NewDecoder(r.Body).Decode(&as)
		f.alerts = append(f.alerts, as...)
		_, _ = w.Write([]byte(`["1"]`))
	default:
		http.NotFound(w, r)
	}
}

func TestPublishNeverBlocksAndBoundsItsQueue(t *testing.T) {
	f := &fakeLAPI{block: make(chan struct{})}
	srv := httptest.NewServer(f)
	defer srv.Close()
	defer close(f.block)
	c, _ := NewClient(srv.URL, MachineCredentials{Login: "m", Password: "p"}, "", time.Minute)
	p := NewPublisher(c, PublisherOptions{QueueSize: 100})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	// The LAPI hangs on the first request; Publish must still return at
	// once every time, and the queue stays at its bound.
	for i := range 1000 {
		p.Publish(Ban{Addr: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), Reason: "x", Duration: time.Hour})
	}
	st := p.Stats()
	if st.Pending > 100 || st.Dropped < 800 {
		t.Fatalf("stats %+v: want at most 100 pending and the rest dropped and counted", st)
	}
}

func TestPublishBatchesAFloodIntoFewRequests(t *testing.T) {
	f := &fakeLAPI{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, _ := NewClient(srv.URL, MachineCredentials{Login: "m", Password: "p"}, "", time.Minute)
	p := NewPublisher(c, PublisherOptions{MinInterval: 200 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 5000 {
		p.Publish(Ban{Addr: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), Reason: "brute-force", Duration: time.Hour})
	}
	go p.Run(ctx)
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().Sent < 5000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	decisions := 0
	for _, a := range f.alerts {
		decisions += len(a.Decisions)
		if len(a.Events) > maxGroupEvents {
			t.Fatalf("flood alert with %d events", len(a.Events))
		}
	}
	// 5000 bans, at most 2000 a request: 3 requests.
	if decisions != 5000 || f.requests != 3 {
		t.Fatalf("%d decisions in %d requests, want 5000 in 3", decisions, f.requests)
	}
}

func TestPublishRetriesAfterAnOutage(t *testing.T) {
	f := &fakeLAPI{down: true}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, _ := NewClient(srv.URL, MachineCredentials{Login: "m", Password: "p"}, "", time.Minute)
	p := NewPublisher(c, PublisherOptions{MinInterval: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	p.Publish(Ban{Addr: netip.MustParseAddr("203.0.113.1"), Reason: "x", Duration: time.Hour})
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Failures < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := p.Stats(); st.Failures < 2 || st.LastError == "" || st.Sent != 0 {
		t.Fatalf("during the outage: %+v", st)
	}
	f.mu.Lock()
	f.down = false
	f.mu.Unlock()
	for p.Stats().Sent < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := p.Stats(); st.Sent != 1 || st.LastError != "" {
		t.Fatalf("after the outage: %+v", st)
	}
}
