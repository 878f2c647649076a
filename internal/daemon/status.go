package daemon

import (
	"context"
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
	Engine         *engine.Status  `json:"engine,omitempty"`
	LastEvents     []RecentEvent   `json:"last_events,omitempty"`
	DB             *state.Summary  `json:"db,omitempty"`
	Bans           []state.Ban     `json:"bans,omitempty"` // only when the daemon is not running
	Error          string          `json:"error,omitempty"`
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

// status builds the daemon's /status document (served by the metrics listener).
func (d *daemon) status(ctx context.Context) (any, error) {
	r := StatusReport{Running: true, Version: d.version, PID: os.Getpid(), Started: d.started.UTC(),
		Replay: d.replay, Config: d.cfgPath, AllowCountries: d.geo.AllowCountries()}
	if d.amiC != nil {
		st := d.amiC.Stats()
		r.AMI = &AMIStatus{Address: d.cfg.AMI.Address, Connected: d.amiC.Connected(), Logins: st.Logins,
			Events: st.Events, EventsDropped: st.EventsDropped}
	}
	if d.ari != nil {
		r.ARI = &ARIStatus{Connected: d.ari.Connected(), Events: d.ari.Events(), Contacts: d.ari.Contacts(), Peers: d.ari.Peers()}
	}
	fs := &FirewallStatus{Backend: d.cfg.Firewall.Backend, Mode: d.cfg.Firewall.Mode, Up: d.fwUp.Load()}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if st, err := d.fw.Status(sctx); err != nil {
		fs.Error = err.Error()
	} else {
		fs.Sets = st.Sets
	}
	cancel()
	r.Firewall = fs
	now := time.Now()
	for _, l := range d.geo.Lists() {
		ls := ListStatus{Name: l.Name, Allowed: l.Allowed, Entries: l.Entries, Source: l.Source, Verified: l.Verified.UTC()}
		if !l.Verified.IsZero() {
			ls.AgeSeconds = now.Sub(l.Verified).Seconds()
		}
		r.Lists = append(r.Lists, ls)
	}
	es := d.eng.Snapshot()
	r.Engine = &es
	r.GeoMode = es.GeoMode // the engine's, which a reload may have changed
	r.LastEvents = d.recent.list()
	if sm, err := d.store.Summary(ctx); err == nil {
		r.DB = &sm
	}
	return r, nil
}
