package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, m *Metrics, status func(context.Context) (any, error)) string {
	t.Helper()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, m.Handler(status), nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestMetricsAndHealth(t *testing.T) {
	var st atomic.Value
	st.Store(State{AMIConnected: false, FirewallUp: true, BansActive: 3, LearnedAllows: 1, SourcesTracked: 7,
		AMIEventsDropped: 2, AMILogins: 4, Unattributed: 1,
		SourceRowsWaiting: 1500, SourceRowsOldestWait: 2500 * time.Millisecond, SourceRowsWritten: 9000, SourceRowsDropped: 5})
	m := New(func() State { return st.Load().(State) })
	m.AMIEvent("InvalidAccountID")
	m.AMIEvent("InvalidAccountID")
	m.AMIEvent("ChallengeSent")
	m.Decision("ban")
	m.EventToKernel(700 * time.Microsecond)
	m.EventToKernel(3 * time.Millisecond)
	base := serve(t, m, func(context.Context) (any, error) { return map[string]int{"bans": 3}, nil })

	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`sipsentry_ami_events_total{type="InvalidAccountID"} 2`,
		`sipsentry_ami_events_total{type="ChallengeSent"} 1`,
		`sipsentry_decisions_total{kind="ban"} 1`,
		"sipsentry_bans_active 3",
		"sipsentry_learned_allows 1",
		"sipsentry_ami_connected 0",
		"sipsentry_firewall_up 1",
		"sipsentry_event_to_kernel_seconds_count 2",
		`sipsentry_event_to_kernel_seconds_bucket{le="0.0008"} 1`,
		"process_resident_memory_bytes",
		"sipsentry_sources_tracked 7",
		"sipsentry_ami_events_dropped_total 2",
		"sipsentry_ami_logins_total 4",
		"sipsentry_events_unattributed_total 1",
		"sipsentry_push_candidates_dropped_total 0",
		"sipsentry_source_rows_waiting 1500",
		"sipsentry_source_rows_oldest_wait_seconds 2.5",
		"sipsentry_source_rows_written_total 9000",
		"sipsentry_source_rows_dropped_total 5",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "sipsentry_ari_connected") {
		t.Error("sipsentry_ari_connected exported although ARI is not configured")
	}

	code, body = get(t, base+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "AMI not connected") {
		t.Errorf("/healthz with AMI down = %d %q", code, body)
	}
	st.Store(State{AMIConnected: true, FirewallUp: false})
	code, body = get(t, base+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "firewall not up") || strings.Contains(body, "AMI") {
		t.Errorf("/healthz with firewall down = %d %q", code, body)
	}
	st.Store(State{AMIConnected: true, FirewallUp: true, ARIEnabled: true, ARIConnected: true})
	code, body = get(t, base+"/healthz")
	if code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz healthy = %d %q", code, body)
	}
	_, body = get(t, base+"/metrics")
	if !strings.Contains(body, "sipsentry_ari_connected 1") {
		t.Error("sipsentry_ari_connected missing with ARI configured")
	}
	code, body = get(t, base+"/status")
	if code != 200 || !strings.Contains(body, `"bans": 3`) {
		t.Errorf("/status = %d %q", code, body)
	}
}

func TestHealthBeforeStateIsStarting(t *testing.T) {
	m := New(nil)
	if err := m.Health(); err == nil || err.Error() != "starting" {
		t.Errorf("Health before SetState = %v", err)
	}
	m.SetState(func() State { return State{AMIConnected: true, FirewallUp: true} })
	if err := m.Health(); err != nil {
		t.Errorf("Health = %v", err)
	}
}

func TestListenRefusesNonLoopback(t *testing.T) {
	for _, a := range []string{"0.0.0.0:9468", "[::]:9468", ":9468", "198.51.100.1:9468", "example.com:9468", "nonsense"} {
		ln, err := Listen(a)
		if err == nil {
			ln.Close()
			t.Errorf("Listen(%q) accepted a non-loopback address", a)
		}
	}
	if _, err := Listen("0.0.0.0:1"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("want ErrNotLoopback, got %v", err)
	}
	if _, err := Listen("nonsense"); !errors.Is(err, ErrBadAddress) {
		t.Errorf("want ErrBadAddress, got %v", err)
	}
}

// Issue 10: "localhost:…" skipped the loopback check (resolved through
// /etc/hosts it served /status to another network). Only literal loopback
// addresses are accepted, and the refusal says what to write instead.
func TestListenRefusesLocalhost(t *testing.T) {
	for _, a := range []string{"localhost:9468", "LOCALHOST:9468", "localhost.:9468", "ip6-localhost:9468"} {
		ln, err := Listen(a)
		if err == nil {
			ln.Close()
			t.Errorf("Listen(%q) accepted a host name", a)
			continue
		}
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("Listen(%q) = %v, want ErrNotLoopback", a, err)
		}
	}
	_, err := Listen("localhost:9468")
	if err == nil || !strings.Contains(err.Error(), `write listen = "127.0.0.1:9468" instead`) {
		t.Errorf("Listen(localhost) = %v, want the fix", err)
	}
	for _, a := range []string{"127.0.0.1:0", "[::1]:0", "127.0.0.2:0"} {
		ln, err := Listen(a)
		if err != nil {
			if strings.Contains(a, "::1") {
				t.Logf("Listen(%q): %v (no IPv6 loopback here)", a, err)
				continue
			}
			t.Errorf("Listen(%q) = %v, want a literal loopback accepted", a, err)
			continue
		}
		ln.Close()
	}
}

// A unix socket is created 0600, serves /status to StatusClient, and a
// second daemon on the same path is refused.
func TestListenUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.sock")
	ln, err := Listen(UnixPrefix + path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", st.Mode(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(func() State { return State{AMIConnected: true, FirewallUp: true} })
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, m.Handler(nil), nil) }()
	hc, base := StatusClient(UnixPrefix+path, 5*time.Second)
	resp, err := hc.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/healthz over the socket: %d", resp.StatusCode)
	}
	if ln2, err := Listen(UnixPrefix + path); err == nil {
		ln2.Close()
		t.Error("a second listener on a live socket was accepted")
	}
	cancel()
	<-done
	if _, err := Listen(UnixPrefix + "relative.sock"); !errors.Is(err, ErrBadAddress) {
		t.Errorf("relative socket path: %v, want ErrBadAddress", err)
	}
}

func TestDuplicateRegisterIsAnError(t *testing.T) {
	m := New(nil)
	if err := m.Register(m.amiEvents); err == nil {
		t.Error("registering a collector twice was accepted")
	}
}

// Issue 10: /healthz said ok through a flushed chain and a full disk. Each
// condition turns it to 503 with its reason and has its own gauge; AMI
// reconnecting within its budget does not.
func TestHealthConditions(t *testing.T) {
	var st atomic.Value
	st.Store(State{AMIConnected: false, AMIReconnecting: true, FirewallUp: true})
	m := New(func() State { return st.Load().(State) })
	base := serve(t, m, nil)
	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Errorf("/healthz while AMI reconnects within its budget = %d %q", code, body)
	}
	st.Store(State{AMIConnected: true, FirewallUp: true, AMIListOverflows: 2, Degraded: map[string]string{
		CondStateDB:  "state DB writes failing for 12s: database or disk is full",
		CondFirewall: "kernel differs: ban set missing 3 entries",
	}})
	code, body := get(t, base+"/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "database or disk is full") || !strings.Contains(body, "ban set missing 3 entries") {
		t.Errorf("/healthz degraded = %d %q", code, body)
	}
	_, body = get(t, base+"/metrics")
	for _, want := range []string{
		`sipsentry_health_degraded{condition="state_db"} 1`,
		`sipsentry_health_degraded{condition="firewall"} 1`,
		`sipsentry_health_degraded{condition="ami"} 0`,
		`sipsentry_health_degraded{condition="lists"} 0`,
		"sipsentry_ami_list_overflows_total 2",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if d := m.Degraded(); len(d) != 2 || d[CondStateDB] == "" {
		t.Errorf("Degraded = %v", d)
	}
}

// pprof is served only when asked for (metrics.pprof).
func TestPprofOnlyWhenAsked(t *testing.T) {
	m := New(func() State { return State{} })
	for _, c := range []struct {
		h    http.Handler
		want int
	}{{m.Handler(nil), http.StatusNotFound}, {m.HandlerWithPprof(nil), http.StatusOK}} {
		rec := httptest.NewRecorder()
		c.h.ServeHTTP(rec, httptest.NewRequest("GET", "/debug/pprof/heap", nil))
		if rec.Code != c.want {
			t.Errorf("/debug/pprof/heap: %d, want %d", rec.Code, c.want)
		}
	}
}
