package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/internal/metrics"
)

// healthBoard holds the conditions that services report (the firewall
// verifier, the list refresh); the state DB and AMI are judged live from
// their own counters when health is read.
type healthBoard struct {
	mu    sync.Mutex        // guards conds
	conds map[string]string // condition -> reason, only while it holds
}

func (h *healthBoard) set(cond, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conds == nil {
		h.conds = map[string]string{}
	}
	h.conds[cond] = reason
}

func (h *healthBoard) clear(cond string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conds, cond)
}

func (h *healthBoard) copy() map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return maps.Clone(h.conds)
}

// stateWriteHealth is what the state DB condition reads (*state.Store).
type stateWriteHealth interface {
	WriteHealth() (failingSince time.Time, lastErr error, failures uint64)
}

// degraded is every condition the daemon itself reports: the services'
// board plus the state DB's writes. AMI and the firewall being up are in
// metrics.State and judged by metrics.
func (d *daemon) degraded() map[string]string {
	out := d.health.copy()
	if out == nil {
		out = map[string]string{}
	}
	if why := stateDBCondition(d.writes); why != "" {
		out[metrics.CondStateDB] = why
	}
	if why := d.listsCondition(time.Now()); why != "" {
		out[metrics.CondLists] = why
	}
	return out
}

// listsCondition says which allowed country lists were refused (geo keeps
// the last good copy, or has none) or are missing or stale: not confirmed
// current within 2 × geo.refresh (what doctor calls stale too).
func (d *daemon) listsCondition(now time.Time) string {
	if d.geo == nil || len(d.geo.AllowCountries()) == 0 {
		return ""
	}
	var bad []string
	for _, p := range d.geo.Health() {
		bad = append(bad, "refused: "+p.String())
	}
	refresh := d.cfg.Geo.Refresh.D()
	if refresh <= 0 {
		refresh = 24 * time.Hour
	}
	ages := d.geo.ListAges()
	for _, cc := range d.geo.AllowCountries() {
		for _, fam := range []string{"ipv4", "ipv6"} {
			list := strings.ToLower(cc) + "-" + fam
			age, ok := ages[list]
			switch {
			case !ok:
				bad = append(bad, list+": not loaded")
			case age > 2*refresh:
				bad = append(bad, fmt.Sprintf("%s: stale, last confirmed %s ago (limit 2 × geo.refresh = %s)", list, age.Round(time.Minute), 2*refresh))
			}
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return "country lists: " + strings.Join(bad, "; ") + " (sipsentry lists update, or fix geo.lists_dir)"
}

// stateDBCondition says why the state DB is degraded, or "".
func stateDBCondition(w stateWriteHealth) string {
	if w == nil {
		return ""
	}
	since, err, n := w.WriteHealth()
	if since.IsZero() {
		return ""
	}
	return fmt.Sprintf("state DB cannot be written (failing for %s, %d failed writes): %v; bans still reach the kernel but are not remembered across a restart: free disk space in state_dir",
		time.Since(since).Round(time.Second), n, err)
}

// HealthStatus is /healthz's verdict on the status page.
type HealthStatus struct {
	Status  string            `json:"status"` // ok | degraded
	Reasons map[string]string `json:"reasons,omitempty"`
}

func (d *daemon) healthStatus() *HealthStatus {
	deg := d.met.Degraded()
	if len(deg) == 0 {
		return &HealthStatus{Status: "ok"}
	}
	return &HealthStatus{Status: "degraded", Reasons: deg}
}

// rateLimited is a slog.Handler that lets a repeating warning or error
// through once per period and counts the rest: a fault that repeats ten
// times a second (a full disk under the engine's writer) gives one line per
// period with "suppressed" = how many were dropped since the last one, not
// a flood. Info and debug records pass untouched. Records are keyed by
// level and message.
type rateLimited struct {
	next   slog.Handler
	period time.Duration
	st     *rateState // shared by the handlers WithAttrs/WithGroup derive
}

type rateState struct {
	mu   sync.Mutex // guards seen
	seen map[string]*rateEntry
}

type rateEntry struct {
	last       time.Time
	suppressed int
}

// maxRateKeys bounds the memory of distinct messages (they are constants in
// the code; the bound only matters if one ever is not).
const maxRateKeys = 1024

func newRateLimited(next slog.Handler, period time.Duration) *rateLimited {
	return &rateLimited{next: next, period: period, st: &rateState{seen: map[string]*rateEntry{}}}
}

func (h *rateLimited) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *rateLimited) WithAttrs(as []slog.Attr) slog.Handler {
	return &rateLimited{next: h.next.WithAttrs(as), period: h.period, st: h.st}
}

func (h *rateLimited) WithGroup(name string) slog.Handler {
	return &rateLimited{next: h.next.WithGroup(name), period: h.period, st: h.st}
}

func (h *rateLimited) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	key := rateKey(r)
	h.st.mu.Lock()
	e := h.st.seen[key]
	if e == nil {
		if len(h.st.seen) >= maxRateKeys {
			clear(h.st.seen)
		}
		e = &rateEntry{}
		h.st.seen[key] = e
	} else if r.Time.Sub(e.last) < h.period {
		e.suppressed++
		h.st.mu.Unlock()
		return nil
	}
	n := e.suppressed
	e.last, e.suppressed = r.Time, 0
	h.st.mu.Unlock()
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", n))
	}
	return h.next.Handle(ctx, r)
}

// maxRateKeyBytes bounds one key: long attribute values are cut, not kept.
const maxRateKeyBytes = 512

func rateKey(r slog.Record) string {
	var b strings.Builder
	b.WriteString(r.Level.String())
	b.WriteByte(0)
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteByte(0)
		b.WriteString(a.Key)
		b.WriteByte('=')
		b.WriteString(a.Value.String())
		return b.Len() < maxRateKeyBytes
	})
	k := b.String()
	if len(k) > maxRateKeyBytes {
		k = k[:maxRateKeyBytes]
	}
	return k
}
