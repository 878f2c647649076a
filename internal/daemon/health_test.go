package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/metrics"
)

// failingStore is a state DB whose writes fail as on a full disk.
type failingStore struct {
	mu    sync.Mutex
	since time.Time
	err   error
	n     uint64
}

func (f *failingStore) WriteHealth() (time.Time, error, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.since, f.err, f.n
}

func (f *failingStore) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.since.IsZero() {
		f.since = time.Now()
	}
	f.err = err
	f.n++
}

func (f *failingStore) heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since, f.err = time.Time{}, nil
}

func request(h http.Handler, path string) (int, string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// Issue 10: a full disk was logged ten times a second with /healthz still
// ok. A state DB that cannot be written turns /healthz to 503 with the
// reason, sets its gauge, shows on the status page, and clears when writes
// succeed again.
func TestHealthStateDBCannotBeWritten(t *testing.T) {
	d := statusDaemon(t, 10)
	fs := &failingStore{}
	d.writes = fs
	h := d.met.Handler(d.status)
	if code, body := request(h, "/healthz"); code != 200 {
		t.Fatalf("/healthz before the fault = %d %q", code, body)
	}
	fs.fail(errors.New("state: commit: database or disk is full (13)"))
	code, body := request(h, "/healthz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "state DB cannot be written") || !strings.Contains(body, "disk is full") {
		t.Errorf("/healthz with a full disk = %d %q", code, body)
	}
	if _, m := request(h, "/metrics"); !strings.Contains(m, `sipsentry_health_degraded{condition="state_db"} 1`) {
		t.Error(`/metrics lacks sipsentry_health_degraded{condition="state_db"} 1`)
	}
	hs := d.healthStatus()
	if hs.Status != "degraded" || !strings.Contains(hs.Reasons[metrics.CondStateDB], "disk is full") {
		t.Errorf("status page health = %+v", hs)
	}
	fs.heal()
	if code, body := request(h, "/healthz"); code != 200 {
		t.Errorf("/healthz after the disk was freed = %d %q", code, body)
	}
}

// The status document carries the verdict (what `sipsentry status` prints).
func TestStatusCarriesHealth(t *testing.T) {
	d := statusDaemon(t, 10)
	d.health.set(metrics.CondFirewall, "kernel differs from the daemon's view: chain SIPSENTRY has no rules")
	_, body := request(d.met.Handler(d.status), "/status")
	var r StatusReport
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	if r.Health == nil || r.Health.Status != "degraded" || !strings.Contains(r.Health.Reasons[metrics.CondFirewall], "no rules") {
		t.Errorf("status health = %+v", r.Health)
	}
}

// A repeating fault is logged once per period with the count of the lines
// left out; other messages and info lines pass.
func TestRateLimitedLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newRateLimited(slog.NewTextHandler(&buf, nil), time.Minute)).With("component", "engine")
	t0 := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	emit := func(at time.Time, lv slog.Level, msg string) {
		r := slog.NewRecord(at, lv, msg, 0)
		log.Handler().Handle(context.Background(), r)
	}
	for i := range 600 { // a minute at ten a second
		emit(t0.Add(time.Duration(i)*100*time.Millisecond), slog.LevelError, "engine: writing state failed; will retry")
	}
	emit(t0.Add(time.Second), slog.LevelWarn, "another fault")
	// The same message about another object is another event: it passes.
	r := slog.NewRecord(t0.Add(2*time.Second), slog.LevelWarn, "geo: list refused", 0)
	r.AddAttrs(slog.String("list", "jp-ipv4"), slog.String("check", "floor"))
	log.Handler().Handle(context.Background(), r)
	r = slog.NewRecord(t0.Add(3*time.Second), slog.LevelWarn, "geo: list refused", 0)
	r.AddAttrs(slog.String("list", "jp-ipv4"), slog.String("check", "html"))
	log.Handler().Handle(context.Background(), r)
	emit(t0.Add(time.Second), slog.LevelInfo, "engine: writing state failed; will retry")
	emit(t0.Add(61*time.Second), slog.LevelError, "engine: writing state failed; will retry")
	out := buf.String()
	if n := strings.Count(out, "level=ERROR"); n != 2 {
		t.Errorf("%d error lines for 601 repeats over 61 s, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "suppressed=599") {
		t.Errorf("the second line does not count the 599 left out:\n%s", out)
	}
	if strings.Count(out, "geo: list refused") != 2 {
		t.Errorf("two refusals of one list for different reasons were collapsed:\n%s", out)
	}
	if !strings.Contains(out, "another fault") || strings.Count(out, "level=INFO") != 1 || !strings.Contains(out, "component=engine") {
		t.Errorf("other lines were held back:\n%s", out)
	}
}

// A list that is missing, refused or stale is a degraded condition with
// the list named.
func TestHealthListsCondition(t *testing.T) {
	d := statusDaemon(t, 1)
	dir := t.TempDir()
	jp4 := ""
	for i := range 300 {
		jp4 += fmt.Sprintf("%d.%d.0.0/16\n", 1+i/200, i%200)
	}
	if err := os.WriteFile(filepath.Join(dir, "jp-ipv4.txt"), []byte(jp4), 0o600); err != nil {
		t.Fatal(err)
	}
	gc := config.Default().Geo
	gc.AllowCountries, gc.ListsDir = []string{"JP"}, dir
	g, err := geo.Open(GeoOptions(gc, t.TempDir()), nil)
	if err != nil {
		t.Fatal(err)
	}
	d.geo, d.cfg.Geo = g, gc
	why := d.listsCondition(time.Now())
	if !strings.Contains(why, "jp-ipv6: not loaded") {
		t.Errorf("lists condition = %q, want jp-ipv6 named as not loaded", why)
	}
	if strings.Contains(why, "jp-ipv4") {
		t.Errorf("lists condition names the good jp-ipv4: %q", why)
	}
	if code, body := request(d.met.Handler(d.status), "/healthz"); code != 503 || !strings.Contains(body, "jp-ipv6") {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

// AMI down is degraded only past its reconnect budget (2 × reconnect_max +
// 2 × timeout): a reconnect within it keeps /healthz ok.
func TestHealthAMIDownPastItsBudget(t *testing.T) {
	d := statusDaemon(t, 1)
	d.amiC = ami.NewClient(ami.ClientConfig{Address: "127.0.0.1:1", ReconnectMax: 20 * time.Millisecond, Timeout: 20 * time.Millisecond})
	if b := d.amiC.ReconnectBudget(); b != 80*time.Millisecond {
		t.Fatalf("ReconnectBudget = %s, want 80ms", b)
	}
	h := d.met.Handler(d.status)
	if code, body := request(h, "/healthz"); code != 200 {
		t.Errorf("/healthz within the reconnect budget = %d %q", code, body)
	}
	time.Sleep(100 * time.Millisecond)
	code, body := request(h, "/healthz")
	if code != 503 || !strings.Contains(body, "AMI not connected") {
		t.Errorf("/healthz past the reconnect budget = %d %q", code, body)
	}
	if _, m := request(h, "/metrics"); !strings.Contains(m, `sipsentry_health_degraded{condition="ami"} 1`) {
		t.Error(`/metrics lacks sipsentry_health_degraded{condition="ami"} 1`)
	}
}
