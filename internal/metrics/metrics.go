// Package metrics is sipsentry's operations surface: the Prometheus registry
// with the daemon's own metrics, and the loopback HTTP server that serves
// /metrics, /healthz and /status (what `sipsentry status` reads).
//
// It only observes: it never changes engine, firewall or AMI state, and it
// never listens on anything but a loopback address (the status page names
// attackers and accounts; put a reverse proxy in front to expose it).
package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// State is the live state read at scrape time, so gauges are never stale.
type State struct {
	AMIConnected  bool
	ARIEnabled    bool
	ARIConnected  bool
	FirewallUp    bool
	BansActive    int
	LearnedAllows int

	// Engine and AMI client counters (cumulative since start).
	SourcesTracked   int    // per-source aggregates in memory
	SourcesEvicted   uint64 // aggregates evicted (age or max_sources)
	Unattributed     uint64 // security events without a usable source
	EventLogDropped  uint64 // event-log rows not written (flood)
	PushDropped      uint64 // foreign logins not examined (queue full)
	AMILogins        uint64 // successful AMI logins (1 + reconnects)
	AMIEventsDropped uint64 // AMI events dropped because the queue was full
	AMIListOverflows uint64 // AMI list answers over their cap (ami.ErrListTooLong)

	// The state writer's source rows (engine's source-row budget): rows
	// waiting and how long the oldest has waited (gauges), rows written
	// and rows never written (counters).
	SourceRowsWaiting    int
	SourceRowsOldestWait time.Duration
	SourceRowsWritten    uint64
	SourceRowsDropped    uint64

	// AMIReconnecting: AMI is down, but not yet for longer than its
	// reconnect budget; /healthz stays ok meanwhile.
	AMIReconnecting bool
	// Degraded are the other faults /healthz reports, by condition
	// (CondFirewall, CondStateDB, CondLists) with the reason.
	Degraded map[string]string
}

// Health conditions: each has a sipsentry_health_degraded gauge.
const (
	CondAMI      = "ami"      // AMI down longer than its reconnect budget
	CondFirewall = "firewall" // sipsentry's rules or sets not up, or the kernel differs from the daemon's view
	CondStateDB  = "state_db" // the state DB cannot be written
	CondLists    = "lists"    // a country list is stale or was refused
)

// Conditions lists every health condition, in report order.
var Conditions = []string{CondAMI, CondFirewall, CondStateDB, CondLists}

// degraded returns each condition that holds, with its reason.
func (s State) degraded() map[string]string {
	out := map[string]string{}
	for c, why := range s.Degraded {
		out[c] = why
	}
	if !s.AMIConnected && !s.AMIReconnecting {
		out[CondAMI] = "AMI not connected"
	}
	if !s.FirewallUp {
		why := "firewall not up"
		if d := out[CondFirewall]; d != "" {
			why += "; " + d
		}
		out[CondFirewall] = why
	}
	return out
}

// Metrics holds sipsentry's own collectors. The zero value is not usable;
// call New.
type Metrics struct {
	reg *prometheus.Registry

	amiEvents     *prometheus.CounterVec
	decisions     *prometheus.CounterVec
	eventToKernel prometheus.Histogram
	ariEvents     *prometheus.CounterVec
	reloads       *prometheus.CounterVec

	mu    sync.Mutex
	state func() State
}

// New builds the registry with the Go/process collectors and sipsentry's
// metrics. state may be nil until SetState is called.
func New(state func() State) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), state: state}
	m.amiEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipsentry_ami_events_total",
		Help: "AMI events received, by Event type (security events and the contact/peer events sipsentry follows).",
	}, []string{"type"})
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipsentry_decisions_total",
		Help: "Engine decisions by kind (ban, refused, learn, flag, ...).",
	}, []string{"kind"})
	m.eventToKernel = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "sipsentry_event_to_kernel_seconds",
		Help: "Time from an AMI event's arrival to its ban being present in the kernel set.",
		// 50 µs .. ~0.8 s: the goal is p99 under 2 ms, fail2ban takes 0.4-0.7 s.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 15),
	})
	m.ariEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipsentry_ari_events_total",
		Help: "ARI websocket events received, by type.",
	}, []string{"type"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sipsentry_reloads_total",
		Help: "Configuration reloads (SIGHUP) by result (ok, failed).",
	}, []string{"result"})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.amiEvents, m.decisions, m.eventToKernel, m.ariEvents, m.reloads,
		stateCollector{m},
	)
	return m
}

// Registry returns the registry, for packages that export their own
// collectors (geo, engine).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Register adds collectors; a duplicate is an error, not a panic.
func (m *Metrics) Register(cs ...prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("metrics: registering a collector: %w", err)
		}
	}
	return nil
}

// SetState sets the function read at scrape time and by /healthz.
func (m *Metrics) SetState(f func() State) {
	m.mu.Lock()
	m.state = f
	m.mu.Unlock()
}

func (m *Metrics) readState() (State, bool) {
	m.mu.Lock()
	f := m.state
	m.mu.Unlock()
	if f == nil {
		return State{}, false
	}
	return f(), true
}

// AMIEvent counts one AMI event of type typ.
func (m *Metrics) AMIEvent(typ string) { m.amiEvents.WithLabelValues(typ).Inc() }

// ARIEvent counts one ARI event of type typ.
func (m *Metrics) ARIEvent(typ string) { m.ariEvents.WithLabelValues(typ).Inc() }

// Decision counts one engine decision of kind.
func (m *Metrics) Decision(kind string) { m.decisions.WithLabelValues(kind).Inc() }

// EventToKernel records one event→kernel latency.
func (m *Metrics) EventToKernel(d time.Duration) { m.eventToKernel.Observe(d.Seconds()) }

// Reload counts a reload attempt.
func (m *Metrics) Reload(ok bool) {
	r := "ok"
	if !ok {
		r = "failed"
	}
	m.reloads.WithLabelValues(r).Inc()
}

var (
	descBans = prometheus.NewDesc("sipsentry_bans_active",
		"Source addresses currently banned (engine view; the kernel set holds the same).", nil, nil)
	descLearned = prometheus.NewDesc("sipsentry_learned_allows",
		"Push servers currently learned into the allow set.", nil, nil)
	descAMI = prometheus.NewDesc("sipsentry_ami_connected",
		"1 when the AMI connection is logged in, else 0.", nil, nil)
	descARI = prometheus.NewDesc("sipsentry_ari_connected",
		"1 when the ARI event websocket is up, else 0 (absent when ARI is not configured).", nil, nil)
	descFW = prometheus.NewDesc("sipsentry_firewall_up",
		"1 when sipsentry's sets and rules are in place, else 0.", nil, nil)
	descSources = prometheus.NewDesc("sipsentry_sources_tracked",
		"Source addresses with an aggregate in memory.", nil, nil)
	descEvicted = prometheus.NewDesc("sipsentry_sources_evicted_total",
		"Per-source aggregates evicted from memory (idle too long, or max_sources reached).", nil, nil)
	descUnattributed = prometheus.NewDesc("sipsentry_events_unattributed_total",
		"Security events without a usable source address (counted, never acted on).", nil, nil)
	descLogDropped = prometheus.NewDesc("sipsentry_event_log_dropped_total",
		"Event-log rows not written to the state DB because of a flood.", nil, nil)
	descPushDropped = prometheus.NewDesc("sipsentry_push_candidates_dropped_total",
		"Foreign logins not examined by the push learner because its queue was full.", nil, nil)
	descAMILogins = prometheus.NewDesc("sipsentry_ami_logins_total",
		"Successful AMI logins (the first plus every reconnect).", nil, nil)
	descAMIDropped = prometheus.NewDesc("sipsentry_ami_events_dropped_total",
		"AMI events dropped because the daemon's event queue was full.", nil, nil)
	descAMIListOverflows = prometheus.NewDesc("sipsentry_ami_list_overflows_total",
		"AMI list answers (PJSIPShowContacts, ...) that passed their item or byte cap: the action failed and the rest of the list was dropped.", nil, nil)
	descSrcWaiting = prometheus.NewDesc("sipsentry_source_rows_waiting",
		"Per-source report rows changed in memory (or of evicted sources) not yet written to the state DB; under a flood the source-row budget holds them back.", nil, nil)
	descSrcWait = prometheus.NewDesc("sipsentry_source_rows_oldest_wait_seconds",
		"How long the oldest source row waiting for the state DB has waited (0 when none waits).", nil, nil)
	descSrcWritten = prometheus.NewDesc("sipsentry_source_rows_written_total",
		"Per-source report rows handed to the state DB writer (the periodic flushes write at most the source-row budget a second).", nil, nil)
	descSrcDropped = prometheus.NewDesc("sipsentry_source_rows_dropped_total",
		"Per-source report rows never written: evicted sources' rows beyond the waiting cap, or rows given up after the state DB kept failing.", nil, nil)
	descDegraded = prometheus.NewDesc("sipsentry_health_degraded",
		"1 while the condition makes /healthz answer 503 (ami: down longer than its reconnect budget; firewall: rules or sets missing or differing from the daemon's view; state_db: writes failing; lists: a country list stale or refused), else 0.",
		[]string{"condition"}, nil)
)

// stateCollector turns State into gauges at scrape time.
type stateCollector struct{ m *Metrics }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBans, descLearned, descAMI, descARI, descFW, descSources, descEvicted,
		descUnattributed, descLogDropped, descPushDropped, descAMILogins, descAMIDropped, descAMIListOverflows,
		descSrcWaiting, descSrcWait, descSrcWritten, descSrcDropped, descDegraded} {
		ch <- d
	}
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.m.readState()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(descBans, prometheus.GaugeValue, float64(s.BansActive))
	ch <- prometheus.MustNewConstMetric(descLearned, prometheus.GaugeValue, float64(s.LearnedAllows))
	ch <- prometheus.MustNewConstMetric(descAMI, prometheus.GaugeValue, b2f(s.AMIConnected))
	ch <- prometheus.MustNewConstMetric(descFW, prometheus.GaugeValue, b2f(s.FirewallUp))
	if s.ARIEnabled {
		ch <- prometheus.MustNewConstMetric(descARI, prometheus.GaugeValue, b2f(s.ARIConnected))
	}
	ch <- prometheus.MustNewConstMetric(descSources, prometheus.GaugeValue, float64(s.SourcesTracked))
	ch <- prometheus.MustNewConstMetric(descSrcWaiting, prometheus.GaugeValue, float64(s.SourceRowsWaiting))
	ch <- prometheus.MustNewConstMetric(descSrcWait, prometheus.GaugeValue, s.SourceRowsOldestWait.Seconds())
	for _, c := range []struct {
		d *prometheus.Desc
		v uint64
	}{{descEvicted, s.SourcesEvicted}, {descUnattributed, s.Unattributed}, {descLogDropped, s.EventLogDropped},
		{descPushDropped, s.PushDropped}, {descAMILogins, s.AMILogins}, {descAMIDropped, s.AMIEventsDropped},
		{descAMIListOverflows, s.AMIListOverflows}, {descSrcWritten, s.SourceRowsWritten}, {descSrcDropped, s.SourceRowsDropped}} {
		ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v))
	}
	deg := s.degraded()
	for _, cond := range Conditions {
		_, bad := deg[cond]
		ch <- prometheus.MustNewConstMetric(descDegraded, prometheus.GaugeValue, b2f(bad), cond)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Health is /healthz's verdict: nil when nothing is degraded, else an error
// naming each condition that holds and why (AMI down past its reconnect
// budget, firewall not up or differing from the daemon's view, state DB not
// writable, a list stale or refused).
func (m *Metrics) Health() error {
	s, ok := m.readState()
	if !ok {
		return errors.New("starting")
	}
	return HealthError(s.degraded())
}

// HealthError joins the reasons of deg in the order of Conditions (nil when
// deg is empty).
func HealthError(deg map[string]string) error {
	var errs []error
	for _, cond := range Conditions {
		if why, ok := deg[cond]; ok {
			errs = append(errs, errors.New(why))
		}
	}
	return errors.Join(errs...)
}

// Degraded returns the conditions that hold now, with their reasons (empty
// when healthy), for the status page.
func (m *Metrics) Degraded() map[string]string {
	s, ok := m.readState()
	if !ok {
		return map[string]string{"starting": "starting"}
	}
	return s.degraded()
}

// Handler serves /metrics, /healthz and, when status is non-nil, /status
// (the JSON value status returns; a json.RawMessage is written as it is).
func (m *Metrics) Handler(status func(ctx context.Context) (any, error)) http.Handler {
	return m.handler(status, false)
}

// HandlerWithPprof is Handler plus Go's /debug/pprof/ (metrics.pprof): the
// listener is loopback-only, and a profile holds no secret the daemon's
// memory would not, but it is still off unless asked for.
func (m *Metrics) HandlerWithPprof(status func(ctx context.Context) (any, error)) http.Handler {
	return m.handler(status, true)
}

func (m *Metrics) handler(status func(ctx context.Context) (any, error), withPprof bool) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := m.Health(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unhealthy: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	if status != nil {
		mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
			v, err := status(r.Context())
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			if raw, ok := v.(json.RawMessage); ok { // encoded already (the daemon caches it)
				w.Write(raw)
				return
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(v)
		})
	}
	return mux
}

var (
	// ErrNotLoopback refuses a listen address that is not on loopback.
	ErrNotLoopback = errors.New("metrics: listen address is not loopback")
	// ErrBadAddress refuses a listen value that is not host:port.
	ErrBadAddress = errors.New("metrics: bad listen address")
)

// UnixPrefix marks a listen value that is a unix socket path
// ("unix:/run/sipsentry/metrics.sock").
const UnixPrefix = "unix:"

// Listen opens addr: a literal loopback address with a port
// ("127.0.0.1:9468", "[::1]:9468") or a unix socket ("unix:/path", created
// 0600). A host name, even "localhost", is refused: it is resolved through
// /etc/hosts and DNS, which another user or the network may change, and it
// once served /status to another network.
func Listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, UnixPrefix); ok {
		return listenUnix(path)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: [metrics] listen %q is not host:port (e.g. \"127.0.0.1:9468\") or unix:/path", ErrBadAddress, addr)
	}
	a, err := netip.ParseAddr(host)
	if err != nil || !a.Unmap().IsLoopback() {
		fix := "use 127.0.0.1 or [::1] (a literal address), or unix:/run/sipsentry/metrics.sock, and a reverse proxy to expose it"
		if strings.EqualFold(host, "localhost") {
			_, port, _ := net.SplitHostPort(addr)
			fix = "write listen = \"127.0.0.1:" + port + "\" instead (a name is resolved through /etc/hosts, which may point elsewhere)"
		}
		return nil, fmt.Errorf("%w: [metrics] listen %q: %s", ErrNotLoopback, addr, fix)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listening on %s: %w (is another sipsentry running?)", addr, err)
	}
	return ln, nil
}

func listenUnix(path string) (net.Listener, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%w: [metrics] listen %q: want an absolute path after unix:", ErrBadAddress, UnixPrefix+path)
	}
	// A socket left by a daemon that died is removed; one that answers is
	// another daemon's.
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("metrics: %s is in use: is another sipsentry running?", path)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	old := syscall.Umask(0o177) // the socket is born 0600: no window for others
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("metrics: listening on %s: %w", path, err)
	}
	return ln, nil
}

// StatusClient returns an HTTP client and the base URL ("http://host:port")
// that reach a daemon listening on listen, for `sipsentry status`.
func StatusClient(listen string, timeout time.Duration) (*http.Client, string) {
	if path, ok := strings.CutPrefix(listen, UnixPrefix); ok {
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}
		return &http.Client{Transport: tr, Timeout: timeout}, "http://sipsentry"
	}
	return &http.Client{Timeout: timeout}, "http://" + listen
}

// Serve serves h on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if log != nil {
		log.Info("metrics: serving /metrics, /healthz and /status", "addr", ln.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-errc
		return nil
	}
}
