package daemon

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/ariwatch"
	"github.com/sipsentry/sipsentry/state"
)

// StatusReport is the daemon's /status document and what `sipsentry status
// --json` prints (the command decodes it from the running daemon).
type StatusReport struct {
	Running        bool            `json:"running"`
	Version        string          `json:"version,omitempty"`
	PID            int             `json:"pid,omitempty"`
	Started        time.Time       `json:"started,omitzero"`
	Replay         string          `json:"replay,omitempty"`
	Config         string          `json:"config,omitempty"`
	GeoMode        string          `json:"geo_mode,omitempty"`
	AllowCountries []string        `json:"allow_countries,omitempty"`
	AMI            *AMIStatus      `json:"ami,omitempty"`
	ARI            *ARIStatus      `json:"ari,omitempty"`
	Firewall       *FirewallStatus `json:"firewall,omitempty"`
	Lists          []ListStatus    `json:"lists,omitempty"`
	Health         *HealthStatus   `json:"health,omitempty"`
	Engine         *engine.Status  `json:"engine,omitempty"`
	LastEvents     []RecentEvent   `json:"last_events,omitempty"`
	DB             *state.Summary  `json:"db,omitempty"`
	// DroppedCountries are the countries whose packets the firewall dropped
	// most in the last hour (drop mode's NFLOG copies), from the state DB.
	DroppedCountries []state.CountryCount `json:"dropped_countries_last_hour,omitempty"`
	Bans             []state.Ban          `json:"bans,omitempty"` // only when the daemon is not running
	Error            string               `json:"error,omitempty"`
}

// AMIStatus is the AMI connection on the status page.
type AMIStatus struct {
	Address       string `json:"address"`
	Connected     bool   `json:"connected"`
	Logins        uint64 `json:"logins"`
	Events        uint64 `json:"events"`
	EventsDropped uint64 `json:"events_dropped"`
}

// ARIStatus is the ARI view on the status page.
type ARIStatus struct {
	Connected bool                    `json:"connected"`
	Events    uint64                  `json:"events"`
	Contacts  []ariwatch.ContactState `json:"contacts"`
	Peers     []ariwatch.PeerState    `json:"peers"`
}

// FirewallStatus is the firewall backend on the status page.
type FirewallStatus struct {
	Backend string             `json:"backend"`
	Mode    string             `json:"mode"`
	Up      bool               `json:"up"`
	Sets    []firewall.SetInfo `json:"sets,omitempty"`
	Error   string             `json:"error,omitempty"`
}

// ListStatus is one country list on the status page.
type ListStatus struct {
	Name       string    `json:"name"`
	Allowed    bool      `json:"allowed"`
	Entries    int       `json:"entries"`
	Source     string    `json:"source"`
	Verified   time.Time `json:"verified,omitzero"`
	AgeSeconds float64   `json:"age_seconds"`
}

// Status costs. The document is rebuilt and encoded at most once a second;
// the engine snapshot (a walk over every ban under the ban lock: ~19 ms at
// 200k bans) at most every 5 s for /status, /healthz and /metrics together; the kernel's rules and sets
// (iptables processes) every 10 s; the DB summary (counts over whole tables:
// ~100 ms at 200k bans) every 30 s. So /status answers from memory at any ban
// count and a request loop cannot slow the ban path (issue 10: ~140 ms of
// CPU per request at 200k bans before).
const (
	statusMaxAge    = time.Second
	snapshotMaxAge  = 5 * time.Second
	fwStatusMaxAge  = 10 * time.Second
	dbSummaryMaxAge = 30 * time.Second
)

type fwStatusResult struct {
	sets []firewall.SetInfo
	err  string
}

// initStatusCaches sets up the cached parts of /status, /healthz and /metrics.
func (d *daemon) initStatusCaches() {
	d.snap = newCached(snapshotMaxAge, 5*time.Second, func(context.Context) engine.Status { return d.eng.Snapshot() })
	d.fwStatus = newCached(fwStatusMaxAge, 5*time.Second, func(ctx context.Context) fwStatusResult {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		st, err := d.fw.Status(sctx)
		if err != nil {
			return fwStatusResult{err: err.Error()}
		}
		return fwStatusResult{sets: st.Sets}
	})
	d.dbSummary = newCached(dbSummaryMaxAge, 30*time.Second, func(ctx context.Context) *state.Summary {
		if sm, err := d.store.Summary(ctx); err == nil {
			return &sm
		}
		return nil
	})
	d.statusDoc = newCached(statusMaxAge, 10*time.Second, func(ctx context.Context) json.RawMessage {
		b, err := json.MarshalIndent(d.buildStatus(ctx), "", "  ")
		if err != nil { // a StatusReport always encodes; say so if it ever does not
			b, _ = json.Marshal(StatusReport{Running: true, Error: "encoding the status: " + err.Error()})
		}
		return append(b, '\n')
	})
}

// status is the daemon's /status document (served by the metrics listener),
// encoded once per statusMaxAge.
func (d *daemon) status(ctx context.Context) (any, error) {
	return d.statusDoc.get(ctx), nil
}

// buildStatus assembles the document from the cached parts.
func (d *daemon) buildStatus(ctx context.Context) StatusReport {
	r := StatusReport{Running: true, Version: d.version, PID: os.Getpid(), Started: d.started.UTC(),
		Replay: d.replay, Config: d.cfgPath, AllowCountries: d.geo.AllowCountries(), Health: d.healthStatus()}
	if d.amiC != nil {
		st := d.amiC.Stats()
		r.AMI = &AMIStatus{Address: d.cfg.AMI.Address, Connected: d.amiC.Connected(), Logins: st.Logins,
			Events: st.Events, EventsDropped: st.EventsDropped}
	}
	if d.ari != nil {
		r.ARI = &ARIStatus{Connected: d.ari.Connected(), Events: d.ari.Events(), Contacts: d.ari.Contacts(), Peers: d.ari.Peers()}
	}
	fs := &FirewallStatus{Backend: d.cfg.Firewall.Backend, Mode: d.cfg.Firewall.Mode, Up: d.fwUp.Load()}
	fst := d.fwStatus.get(ctx)
	fs.Sets, fs.Error = fst.sets, fst.err
	r.Firewall = fs
	now := time.Now()
	for _, l := range d.geo.Lists() {
		ls := ListStatus{Name: l.Name, Allowed: l.Allowed, Entries: l.Entries, Source: l.Source, Verified: l.Verified.UTC()}
		if !l.Verified.IsZero() {
			ls.AgeSeconds = now.Sub(l.Verified).Seconds()
		}
		r.Lists = append(r.Lists, ls)
	}
	es := d.snap.get(ctx)
	r.Engine = &es
	r.GeoMode = es.GeoMode // the engine's, which a reload may have changed
	r.LastEvents = d.recent.list()
	r.DB = d.dbSummary.get(ctx)
	return r
}
