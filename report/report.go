// Package report builds the `sipsentry sources` report — one row per source
// address: where it is, what it did, what sipsentry decided — and prints it
// as a table, JSON or CSV.
//
// The numbers come from activity.Source, the same aggregate the engine and
// the state DB keep, so a report over a log and a report over the live DB
// count alike. Every string that came from the network (account names, user
// agents) is printed with control characters escaped: a report must never
// let an attacker write to the admin's terminal.
//
// It never decides anything (no bans, no allows) and never reads the network.
package report

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/geo"
)

// Status values, as the state DB names them.
const (
	StatusAllowed     = "allowed"
	StatusLearnedPush = "learned_push"
	StatusBanned      = "banned"
	StatusWouldBan    = "would_ban"
	StatusFlagged     = "flagged"
	StatusNone        = "none"
)

// Input is one source as the report receives it: the activity aggregate
// plus what the daemon decided (empty offline).
type Input struct {
	activity.Source
	Status      string
	BannedUntil time.Time
	Offences    int
	Note        string
}

// Geo is what the report needs from geo.Geo.
type Geo interface {
	Lookup(a netip.Addr) geo.Verdict
}

// GeoInfo says which geo sources were available, so that "no answer" and
// "not loaded" print differently.
type GeoInfo struct {
	ListsLoaded    bool // at least one country list
	MMDBLoaded     bool
	ASNLoaded      bool // show the ASN/org columns
	AllowCountries []string
	// StaticAllow is firewall.allow: addresses the firewall always lets in.
	StaticAllow []netip.Prefix
	// Enforce is firewall.mode = "enforce"; GeoMode is engine.geo_mode.
	// Together they say whether a source outside the allowed countries is
	// dropped, would be dropped (monitor), or neither.
	Enforce bool
	GeoMode string
}

// Row is one line of the report. JSON keys are stable (snake_case).
type Row struct {
	IP               netip.Addr              `json:"ip"`
	CountryMMDB      string                  `json:"country_mmdb"` // "" none, "?" no DB
	CountryList      string                  `json:"country_list"` // "" none, "?" no lists
	InAllowed        *bool                   `json:"in_allowed"`   // null when no allowed set is configured
	ASN              uint                    `json:"asn,omitempty"`
	Org              string                  `json:"org,omitempty"`
	FirstSeen        time.Time               `json:"first_seen"`
	LastSeen         time.Time               `json:"last_seen"`
	AuthOK           int                     `json:"auth_ok"`
	AuthFailed       int                     `json:"auth_failed"`
	UnknownAccount   int                     `json:"unknown_account"`
	ACL              int                     `json:"acl"`
	Other            int                     `json:"other"`
	Injection        int                     `json:"injection"`
	Failures         int                     `json:"failures"`
	Accounts         []activity.AccountCount `json:"accounts"` // top 3
	DistinctAccounts int                     `json:"distinct_accounts"`
	LastUserAgent    string                  `json:"last_user_agent"`
	Status           string                  `json:"status"`
	BannedUntil      *time.Time              `json:"banned_until,omitempty"`
	Offences         int                     `json:"offences,omitempty"`
	Notes            []string                `json:"notes"`
}

// Country is the row's country for grouping and filtering: the list's
// answer when it has one, else the database's, else "?".
func (r *Row) Country() string {
	if r.CountryList != "" && r.CountryList != "?" {
		return r.CountryList
	}
	if r.CountryMMDB != "" && r.CountryMMDB != "?" {
		return r.CountryMMDB
	}
	return "?"
}

// CountryCount is one entry of the header's by-country summary.
type CountryCount struct {
	Country string `json:"country"`
	Sources int    `json:"sources"`
}

// Summary is the report header.
type Summary struct {
	Sources   int            `json:"sources"`
	Events    int            `json:"events"` // attempts counted (auth ok + failures)
	Bans      int            `json:"bans"`
	ByCountry []CountryCount `json:"by_country"` // top 10
}

// Report is the whole report.
type Report struct {
	Summary Summary
	Rows    []Row
	Geo     GeoInfo
}

// Build turns inputs into rows (unfiltered, sorted by last seen). g may be nil.
func Build(in []Input, g Geo, gi GeoInfo) *Report {
	rep := &Report{Geo: gi, Rows: make([]Row, 0, len(in))}
	for i := range in {
		rep.Rows = append(rep.Rows, buildRow(&in[i], g, gi))
	}
	Sort(rep.Rows, "last")
	return rep
}

func buildRow(in *Input, g Geo, gi GeoInfo) Row {
	c := in.Counts
	r := Row{
		IP: in.Addr, FirstSeen: in.FirstSeen.UTC(), LastSeen: in.LastSeen.UTC(),
		AuthOK: c.AuthOK, AuthFailed: c.AuthFailed, UnknownAccount: c.UnknownAccount,
		ACL: c.ACL, Other: c.Other, Injection: c.Injection, Failures: c.Failures(),
		Accounts: in.TopAccounts(3), DistinctAccounts: in.DistinctAccounts,
		LastUserAgent: in.LastUserAgent, Status: cmp.Or(in.Status, StatusNone),
		Offences: in.Offences, Notes: []string{},
	}
	if r.Accounts == nil {
		r.Accounts = []activity.AccountCount{}
	}
	if !in.BannedUntil.IsZero() {
		t := in.BannedUntil.UTC()
		r.BannedUntil = &t
	}
	if in.Note != "" {
		r.Notes = append(r.Notes, in.Note)
	}
	r.CountryMMDB, r.CountryList = "?", "?"
	if g != nil {
		v := g.Lookup(in.Addr)
		if gi.MMDBLoaded {
			r.CountryMMDB = v.MMDBCountry
		}
		if gi.ListsLoaded {
			r.CountryList = v.ListCountry
		}
		if len(gi.AllowCountries) > 0 {
			b := v.InAllowed
			r.InAllowed = &b
		}
		r.ASN, r.Org = v.ASN, v.Org
		if v.Disagree {
			r.Notes = append(r.Notes, "list and mmdb disagree")
		}
	}
	// A login from outside the allowed countries; loopback and private
	// addresses (the PBX's own AMI clients, the LAN) have no country.
	if r.AuthOK > 0 && r.InAllowed != nil && !*r.InAllowed && r.Status != StatusLearnedPush && r.Status != StatusAllowed &&
		in.Addr.IsGlobalUnicast() && !in.Addr.IsPrivate() {
		r.Notes = append(r.Notes, "foreign login")
	}
	if r.Injection > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("injection attempt (%d)", r.Injection))
	}
	return r
}

// Options select and order rows.
type Options struct {
	Since       time.Time // rows last seen at or after; zero = all
	Countries   []string  // upper-case codes; a row matches by list or mmdb
	Statuses    []string
	MinFailures int
	Sort        string // last | failures | ip | country
	Limit       int    // 0 = all
}

// StatusFilters are the accepted --status values.
var StatusFilters = []string{StatusAllowed, StatusLearnedPush, StatusBanned, StatusWouldBan, StatusFlagged, StatusNone}

// SortKeys are the accepted --sort values.
var SortKeys = []string{"last", "failures", "ip", "country"}

// Apply filters and sorts rep.Rows in place and recomputes the summary over
// the rows that remain.
func (rep *Report) Apply(o Options) error {
	if o.Sort == "" {
		o.Sort = "last"
	}
	if !slices.Contains(SortKeys, o.Sort) {
		return fmt.Errorf("report: --sort %q: want one of %s", o.Sort, strings.Join(SortKeys, ", "))
	}
	for _, s := range o.Statuses {
		switch s {
		case StatusAllowed, StatusLearnedPush, StatusBanned, StatusWouldBan, StatusFlagged, StatusNone:
		default:
			return fmt.Errorf("report: --status %q: want one of allowed, learned_push, banned, would_ban, flagged, none", s)
		}
	}
	out := rep.Rows[:0]
	for _, r := range rep.Rows {
		if !o.Since.IsZero() && r.LastSeen.Before(o.Since) {
			continue
		}
		if len(o.Countries) > 0 && !slices.Contains(o.Countries, r.CountryList) && !slices.Contains(o.Countries, r.CountryMMDB) {
			continue
		}
		if len(o.Statuses) > 0 && !slices.Contains(o.Statuses, r.Status) {
			continue
		}
		if r.Failures < o.MinFailures {
			continue
		}
		out = append(out, r)
	}
	rep.Rows = out
	Sort(rep.Rows, o.Sort)
	rep.Summary = summarize(rep.Rows)
	if o.Limit > 0 && len(rep.Rows) > o.Limit {
		rep.Rows = rep.Rows[:o.Limit]
	}
	return nil
}

// Sort orders rows by key; ties break by IP so output is deterministic.
func Sort(rows []Row, key string) {
	slices.SortStableFunc(rows, func(a, b Row) int {
		var c int
		switch key {
		case "failures":
			c = cmp.Compare(b.Failures, a.Failures)
		case "ip":
		case "country":
			c = cmp.Compare(a.Country(), b.Country())
		default: // last: most recent first
			c = b.LastSeen.Compare(a.LastSeen)
		}
		if c != 0 {
			return c
		}
		return a.IP.Compare(b.IP)
	})
}

func summarize(rows []Row) Summary {
	s := Summary{Sources: len(rows), ByCountry: []CountryCount{}}
	by := map[string]int{}
	for i := range rows {
		r := &rows[i]
		s.Events += r.AuthOK + r.Failures
		if r.Status == StatusBanned {
			s.Bans++
		}
		by[r.Country()]++
	}
	for cc, n := range by {
		s.ByCountry = append(s.ByCountry, CountryCount{cc, n})
	}
	slices.SortFunc(s.ByCountry, func(a, b CountryCount) int {
		return cmp.Or(cmp.Compare(b.Sources, a.Sources), cmp.Compare(a.Country, b.Country))
	})
	if len(s.ByCountry) > 10 {
		s.ByCountry = s.ByCountry[:10]
	}
	return s
}

// Aggregator turns a stream of security events (offline: a log or an AMI
// capture) into per-source aggregates, exactly as the engine would count
// them.
type Aggregator struct {
	sources map[netip.Addr]*activity.Source
	// Events is every event added; Unattributed those without a source.
	Events, Unattributed int
	// last is the newest event time seen: an event without EventTV (a
	// forged AMI block has none) is placed at the stream's clock instead
	// of at the zero time, which would corrupt first/last seen.
	last time.Time
}

// NewAggregator returns an empty Aggregator.
func NewAggregator() *Aggregator {
	return &Aggregator{sources: map[netip.Addr]*activity.Source{}}
}

// Add counts one event for its true source (ev.Remote). Values kept across
// events are copied so the aggregate does not pin the reader's buffers.
func (a *Aggregator) Add(ev *ami.SecurityEvent) {
	a.Events++
	if !ev.Remote.IsValid() {
		a.Unattributed++
		return
	}
	at := ev.Time
	if at.IsZero() {
		at = a.last
	} else if at.After(a.last) {
		a.last = at
	}
	addr := ev.Remote.Addr().Unmap()
	s := a.sources[addr]
	if s == nil {
		s = &activity.Source{Addr: addr}
		a.sources[addr] = s
	}
	s.Observe(ev, at)
}

// Inputs returns the aggregates as report inputs, in address order. Offline
// there is no daemon decision; sources with injection evidence are
// "flagged", every other one "none".
func (a *Aggregator) Inputs() []Input {
	out := make([]Input, 0, len(a.sources))
	for _, s := range a.sources {
		in := Input{Source: *s, Status: StatusNone}
		if s.Counts.Injection > 0 {
			in.Status = StatusFlagged
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(x, y Input) int { return x.Addr.Compare(y.Addr) })
	return out
}
