package crowdsec

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Origin is what sipsentry's published decisions carry as their origin.
const Origin = "sipsentry"

// Alert is the LAPI 1.4.6 alert model, every top-level field present (the
// LAPI refuses an alert that lacks one).
type Alert struct {
	Scenario        string          `json:"scenario"`
	ScenarioHash    string          `json:"scenario_hash"`
	ScenarioVersion string          `json:"scenario_version"`
	Message         string          `json:"message"`
	Capacity        int             `json:"capacity"`
	Leakspeed       string          `json:"leakspeed"`
	Simulated       bool            `json:"simulated"`
	EventsCount     int             `json:"events_count"`
	Events          []AlertEvent    `json:"events"`
	StartAt         string          `json:"start_at"`
	StopAt          string          `json:"stop_at"`
	Source          AlertSource     `json:"source"`
	Decisions       []AlertDecision `json:"decisions"`
	Meta            []Meta          `json:"meta,omitempty"`
}

// AlertSource is the alert's source (scope Ip).
type AlertSource struct {
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	IP       string `json:"ip,omitempty"`
	Country  string `json:"cn,omitempty"`
	ASNumber string `json:"as_number,omitempty"`
	ASName   string `json:"as_name,omitempty"`
}

// AlertEvent is one event of an alert (timestamp and meta).
type AlertEvent struct {
	Timestamp string `json:"timestamp"`
	Meta      []Meta `json:"meta"`
}

// Meta is a key/value pair of an alert or event.
type Meta struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// AlertDecision is the decision an alert carries.
type AlertDecision struct {
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
}

// Ban is one local ban to publish.
type Ban struct {
	Addr     netip.Addr
	Reason   string        // the engine's reason, e.g. "brute-force"
	Duration time.Duration // time left
	Country  string        // ISO code or ""
	ASNumber string
	ASName   string
	Accounts []string // accounts tried (attacker text: escaped before sending)
	Time     time.Time
}

// Scenario is the LAPI scenario for a reason: "sipsentry/<reason>" with the
// reason reduced to [a-z0-9-].
func Scenario(reason string) string {
	var b strings.Builder
	b.WriteString("sipsentry/")
	dash := false
	for _, r := range strings.ToLower(reason) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if ok {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > len("sipsentry/") {
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 64 {
			break
		}
	}
	s := strings.TrimRight(b.String(), "-")
	if s == "sipsentry" || s == "sipsentry/" {
		return "sipsentry/ban"
	}
	return s
}

// Escape makes attacker-controlled text safe to hand on: printable ASCII and
// valid non-control UTF-8 stay, everything else becomes \xNN, and the result
// is cut at max bytes.
func Escape(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1, r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0, r == '\\':
			for j := 0; j < size; j++ {
				fmt.Fprintf(&b, "\\x%02x", s[i+j])
			}
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	out := b.String()
	if len(out) > max {
		out = out[:max]
	}
	return out
}

// alertOf builds the LAPI alert for one ban.
func alertOf(b Ban) Alert {
	ts := b.Time.UTC().Format(time.RFC3339)
	sc := Scenario(b.Reason)
	dur := b.Duration.Round(time.Second)
	if dur < time.Second {
		dur = time.Second
	}
	meta := []Meta{{Key: "service", Value: "asterisk"}, {Key: "reason", Value: Escape(b.Reason, 64)}}
	var accts []string
	for i, a := range b.Accounts {
		if i == 10 {
			break
		}
		accts = append(accts, Escape(a, 64))
	}
	if len(accts) > 0 {
		meta = append(meta, Meta{Key: "accounts", Value: strings.Join(accts, ",")})
	}
	return Alert{
		Scenario: sc, Message: fmt.Sprintf("sipsentry banned %s: %s", b.Addr, Escape(b.Reason, 64)),
		Leakspeed: "0", EventsCount: 1,
		Events:  []AlertEvent{{Timestamp: ts, Meta: meta}},
		StartAt: ts, StopAt: ts,
		Source: AlertSource{Scope: "Ip", Value: b.Addr.String(), IP: b.Addr.String(),
			Country: Escape(b.Country, 2), ASNumber: Escape(b.ASNumber, 16), ASName: Escape(b.ASName, 128)},
		Decisions: []AlertDecision{{Origin: Origin, Type: "ban", Scope: "Ip", Value: b.Addr.String(),
			Duration: dur.String(), Scenario: sc}},
	}
}

// maxGroupEvents caps the per-ban events (country, accounts) a flood alert
// carries: the LAPI stores each event as rows of its own, and under a flood
// the decisions are what must get through.
const maxGroupEvents = 100

// alertsOf turns a batch into alerts: one per ban, or under a flood (more
// than groupAbove bans) one per scenario with a decision and an event per
// ban. Durations are the time left at now, not when the ban was made (the
// batch may have waited).
func alertsOf(batch []Ban, now time.Time, groupAbove int) []Alert {
	for i := range batch {
		if left := batch[i].Time.Add(batch[i].Duration).Sub(now); left < batch[i].Duration {
			batch[i].Duration = max(left, time.Second)
		}
	}
	if groupAbove < 0 || len(batch) <= groupAbove {
		alerts := make([]Alert, len(batch))
		for i, b := range batch {
			alerts[i] = alertOf(b)
		}
		return alerts
	}
	var alerts []Alert
	index := map[string]int{}
	for _, b := range batch {
		one := alertOf(b)
		i, ok := index[one.Scenario]
		if !ok {
			i = len(alerts)
			index[one.Scenario] = i
			one.Message = "sipsentry flood: " + one.Scenario
			one.Events[0].Meta = append(one.Events[0].Meta, Meta{Key: "source_ip", Value: b.Addr.String()})
			alerts = append(alerts, one)
			continue
		}
		a := &alerts[i]
		a.Decisions = append(a.Decisions, one.Decisions...)
		a.EventsCount++
		if len(a.Events) < maxGroupEvents {
			ev := one.Events[0]
			ev.Meta = append(ev.Meta, Meta{Key: "source_ip", Value: b.Addr.String()})
			a.Events = append(a.Events, ev)
		}
		a.StopAt = one.StopAt
	}
	return alerts
}

// PublisherOptions tune the publisher; zero values take the defaults.
type PublisherOptions struct {
	// QueueSize bounds bans waiting to be sent (default 100,000); when full
	// the oldest is dropped and counted.
	QueueSize int
	// MaxBatch is the most alerts in one request (default 2,000).
	MaxBatch int
	// MinInterval is the least time between two requests (default 1s), so a
	// flood costs the LAPI one request a second.
	MinInterval time.Duration
	// GroupAbove: a batch larger than this (a flood) is sent as one alert
	// per scenario carrying many decisions, instead of one alert per ban:
	// the LAPI stores a decision far faster than an alert (measured on
	// 1.4.6). Default 50; negative never groups.
	GroupAbove int
	// MaxBackoff caps the wait between retries after a failure (default 60s).
	MaxBackoff time.Duration
	Logger     *slog.Logger
}

// PublisherStats are the publisher's counters.
type PublisherStats struct {
	Queued, Sent, Dropped, Failures uint64
	Pending                         int
	LastError                       string // of the last failed request, "" once one succeeds
}

// Publisher sends local bans to the LAPI in batches without ever blocking
// the caller: Publish only appends to a bounded queue.
type Publisher struct {
	c   *Client
	o   PublisherOptions
	log *slog.Logger

	// queueMu guards queue.
	queueMu sync.Mutex
	queue   []Ban
	wake    chan struct{}

	// recentMu guards recent: addresses published lately, so that their
	// decisions coming back on the stream are known as ours.
	recentMu sync.Mutex
	recent   map[netip.Addr]time.Time

	queued, sent, dropped, failures atomic.Uint64
	lastErr                         atomic.Pointer[string]
}

// NewPublisher makes a publisher on c.
func NewPublisher(c *Client, o PublisherOptions) *Publisher {
	if o.QueueSize <= 0 {
		o.QueueSize = 100_000
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 2000
	}
	if o.MinInterval <= 0 {
		o.MinInterval = time.Second
	}
	if o.GroupAbove == 0 {
		o.GroupAbove = 50
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Publisher{c: c, o: o, log: o.Logger, wake: make(chan struct{}, 1), recent: map[netip.Addr]time.Time{}}
}

// Publish queues b; it never blocks.
func (p *Publisher) Publish(b Ban) {
	if b.Time.IsZero() {
		b.Time = time.Now()
	}
	p.queueMu.Lock()
	if len(p.queue) >= p.o.QueueSize {
		// Drop the oldest: the newest bans are the ones still worth sharing.
		p.queue = p.queue[1:]
		p.dropped.Add(1)
	}
	p.queue = append(p.queue, b)
	p.queueMu.Unlock()
	p.queued.Add(1)
	p.recentMu.Lock()
	p.recent[b.Addr.Unmap()] = b.Time.Add(b.Duration)
	p.recentMu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Published tells whether a was published by this process and its ban has
// not yet run out: such a decision coming back on the stream is ours.
func (p *Publisher) Published(a netip.Addr, now time.Time) bool {
	p.recentMu.Lock()
	defer p.recentMu.Unlock()
	until, ok := p.recent[a.Unmap()]
	if ok && now.After(until) {
		delete(p.recent, a.Unmap())
		return false
	}
	return ok
}

// Stats returns the counters.
func (p *Publisher) Stats() PublisherStats {
	p.queueMu.Lock()
	n := len(p.queue)
	p.queueMu.Unlock()
	st := PublisherStats{Queued: p.queued.Load(), Sent: p.sent.Load(), Dropped: p.dropped.Load(), Failures: p.failures.Load(), Pending: n}
	if e := p.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

func (p *Publisher) take() []Ban { return p.takeUpTo(p.o.MaxBatch) }

// giveBack puts a batch that failed in front of the queue again, keeping
// the bound (the oldest go first).
func (p *Publisher) giveBack(batch []Ban) {
	p.queueMu.Lock()
	defer p.queueMu.Unlock()
	q := append(batch, p.queue...)
	if over := len(q) - p.o.QueueSize; over > 0 {
		q = q[over:]
		p.dropped.Add(uint64(over))
	}
	p.queue = q
}

// Run sends queued bans until ctx ends: at once when idle, at most one
// request per MinInterval under a flood, with backoff after failures.
func (p *Publisher) Run(ctx context.Context) error {
	var last time.Time
	backoff := time.Duration(0)
	for {
		batch := p.take()
		if batch == nil {
			select {
			case <-ctx.Done():
				return nil
			case <-p.wake:
				continue
			}
		}
		wait := time.Until(last.Add(p.o.MinInterval))
		if backoff > wait {
			wait = backoff
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				p.giveBack(batch)
				return nil
			case <-t.C:
			}
		}
		// Bans published meanwhile ride along, up to the batch size.
		if more := p.takeUpTo(p.o.MaxBatch - len(batch)); len(more) > 0 {
			batch = append(batch, more...)
		}
		alerts := alertsOf(batch, time.Now(), p.o.GroupAbove)
		last = time.Now()
		err := p.c.PostAlerts(ctx, alerts)
		if err != nil {
			if ctx.Err() != nil {
				p.giveBack(batch)
				return nil
			}
			p.failures.Add(1)
			msg := err.Error()
			p.lastErr.Store(&msg)
			backoff = min(max(backoff*2, time.Second), p.o.MaxBackoff)
			p.log.Warn("crowdsec: publishing bans failed; they stay queued and are retried",
				"bans", len(batch), "retry_in", backoff, "err", err)
			p.giveBack(batch)
			if errors.Is(err, ErrUnauthorized) {
				p.log.Error("crowdsec: the local API refused sipsentry's machine credentials; check crowdsec.machine_credentials_file (cscli machines add)")
			}
			continue
		}
		if backoff > 0 {
			p.log.Info("crowdsec: publishing works again", "bans", len(batch))
		}
		backoff = 0
		p.lastErr.Store(nil)
		p.sent.Add(uint64(len(batch)))
	}
}

func (p *Publisher) takeUpTo(n int) []Ban {
	if n <= 0 {
		return nil
	}
	p.queueMu.Lock()
	defer p.queueMu.Unlock()
	n = min(n, len(p.queue))
	if n == 0 {
		return nil
	}
	out := make([]Ban, n)
	copy(out, p.queue)
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil // let the backing array go after a flood
	}
	return out
}
