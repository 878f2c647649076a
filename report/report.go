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

// Status values: the first six as the state DB names them, then what the
// report works out from the configuration for a source the daemon has not
// decided about (or offline). Each says what the firewall does with the
// source's packets.
const (
	StatusAllowed     = "allowed" // inside a static firewall.allow entry
	StatusLearnedPush = "learned_push"
	StatusBanned      = "banned"
	StatusWouldBan    = "would_ban" // monitor mode: decided, not dropped
	StatusFlagged     = "flagged"   // injection evidence, not banned
	StatusNone        = "none"

	StatusAllowedCountry = "allowed_country" // in the allowed countries' set
	StatusDropped        = "dropped"         // geo_mode = "drop", enforce: outside the allowed countries
	StatusWouldDrop      = "would_drop"      // the same in monitor mode
)

// Input is one source as the report receives it: the activity aggregate
// plus what the daemon decided (empty offline).
type Input struct {
	activity.Source
	Status      string
	BannedUntil time.Time
	Offences    int
	Note        string

	// What only a log or capture read whole can tell (zero from the DB).
	Events     int                     // security events attributed to the source
	Unanswered int                     // challenges never followed by an answer
	AccountsOK []activity.AccountCount // accounts that authenticated from it
	Local      bool                    // one of the PBX's own addresses
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
	Unanswered       int                     `json:"unanswered_challenges"`
	Events           int                     `json:"events"`
	AccountsOK       []activity.AccountCount `json:"accounts_ok"` // accounts that authenticated, top 3
	Accounts         []activity.AccountCount `json:"accounts"`    // accounts that failed, top 3
	DistinctAccounts int                     `json:"distinct_accounts"`
	LastUserAgent    string                  `json:"last_user_agent"`
	Local            bool                    `json:"local"`
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
	Events    int            `json:"events"`   // security events of these sources, as the footer counts them
	Attempts  int            `json:"attempts"` // auth ok + failures
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
		Unanswered: in.Unanswered, Local: in.Local, Events: in.Events,
		AccountsOK: topAccounts(in.AccountsOK, 3),
	}
	if r.Events == 0 {
		// From the DB: the attempts are what is known.
		r.Events = r.AuthOK + r.Failures
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
	r.Status = firewallStatus(&r, in.Addr, gi)
	// A login from outside the allowed countries; loopback and private
	// addresses (the PBX's own AMI clients, the LAN) have no country.
	if r.AuthOK > 0 && r.InAllowed != nil && !*r.InAllowed && r.Status != StatusLearnedPush && r.Status != StatusAllowed &&
		!r.Local && in.Addr.IsGlobalUnicast() && !in.Addr.IsPrivate() {
		r.Notes = append(r.Notes, "foreign login")
	}
	if r.Unanswered > 0 && r.AuthOK == 0 && r.Failures == 0 {
		r.Notes = append(r.Notes, "only challenged, never answered")
	}
	if r.Injection > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("injection attempt (%d)", r.Injection))
	}
	return r
}

// firewallStatus says what the firewall does with the source: the daemon's
// decision when it made one (banned, learned push, static allow), else what
// the configuration does with its address (static allow, allowed country,
// dropped outside the countries), else flagged for injection, else none.
func firewallStatus(r *Row, a netip.Addr, gi GeoInfo) string {
	switch r.Status {
	case StatusBanned, StatusWouldBan, StatusLearnedPush, StatusAllowed:
		return r.Status
	}
	for _, p := range gi.StaticAllow {
		if p.Contains(a) {
			return StatusAllowed
		}
	}
	if r.InAllowed != nil && *r.InAllowed {
		return StatusAllowedCountry
	}
	// The PBX's own addresses never reach the SIP ports from outside.
	if r.InAllowed != nil && !r.Local && gi.GeoMode == "drop" {
		if gi.Enforce {
			return StatusDropped
		}
		return StatusWouldDrop
	}
	if r.Injection > 0 {
		return StatusFlagged
	}
	return r.Status
}

func topAccounts(in []activity.AccountCount, n int) []activity.AccountCount {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b activity.AccountCount) int { return b.Count - a.Count })
	if len(out) > n {
		out = out[:n]
	}
	if out == nil {
		out = []activity.AccountCount{}
	}
	return out
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
var StatusFilters = []string{StatusBanned, StatusWouldBan, StatusLearnedPush, StatusAllowed, StatusAllowedCountry,
	StatusDropped, StatusWouldDrop, StatusFlagged, StatusNone}

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
		if !slices.Contains(StatusFilters, s) {
			return fmt.Errorf("report: --status %q: want one of %s", s, strings.Join(StatusFilters, ", "))
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
		s.Events += r.Events
		s.Attempts += r.AuthOK + r.Failures
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
// them, plus what only the report shows (unanswered challenges, accounts
// that authenticated, user agents of registrations, the PBX's own
// addresses).
type Aggregator struct {
	sources map[netip.Addr]*aggSource
	// Events is every event added; Unattributed those without a source.
	Events, Unattributed int
	// last is the newest event time seen: an event without EventTV (a
	// forged AMI block has none) is placed at the stream's clock instead
	// of at the zero time, which would corrupt first/last seen.
	last time.Time
	// own holds the PBX's addresses: every LocalAddress seen.
	own map[netip.Addr]bool
	// agents are user agents of registrations (AMI contacts) by address.
	agents map[netip.Addr]string
}

type aggSource struct {
	activity.Source
	events int
	// challenged holds sessions sent a challenge for a known account and
	// not answered yet (no success or failure on the same session).
	challenged map[string]bool
	accountsOK []activity.AccountCount
}

// maxPendingChallenges bounds the sessions remembered per source: a
// scanner opening a million sessions must not grow memory.
const maxPendingChallenges = 1024

// NewAggregator returns an empty Aggregator.
func NewAggregator() *Aggregator {
	return &Aggregator{sources: map[netip.Addr]*aggSource{}, own: map[netip.Addr]bool{}, agents: map[netip.Addr]string{}}
}

// Add counts one event for its true source (ev.Remote). Values kept across
// events are copied so the aggregate does not pin the reader's buffers.
func (a *Aggregator) Add(ev *ami.SecurityEvent) {
	a.Events++
	if ev.Local.IsValid() && !ev.IsInjection() {
		a.own[ev.Local.Addr().Unmap()] = true
	}
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
		s = &aggSource{Source: activity.Source{Addr: addr}}
		a.sources[addr] = s
	}
	s.events++
	k, _ := s.Observe(ev, at)
	switch {
	case ev.Type == ami.EventChallengeSent && k == activity.KindNeutral && ev.SessionID != "":
		if s.challenged == nil {
			s.challenged = map[string]bool{}
		}
		if len(s.challenged) < maxPendingChallenges {
			s.challenged[ev.SessionID] = true // seclog and ami already copy it out of their buffers
		}
	case k == activity.KindAuthOK || k == activity.KindAuthFailed:
		delete(s.challenged, ev.SessionID)
	}
	if k == activity.KindAuthOK && ev.AccountID != "" && ev.AccountID != ami.UnknownAccount {
		s.addOK(ev.AccountID)
	}
}

func (s *aggSource) addOK(acct string) {
	for i := range s.accountsOK {
		if s.accountsOK[i].Account == acct {
			s.accountsOK[i].Count++
			return
		}
	}
	if len(s.accountsOK) < activity.MaxAccounts {
		s.accountsOK = append(s.accountsOK, activity.AccountCount{Account: strings.Clone(acct), Count: 1})
	}
}

// AddContact keeps the user agent a registration (an AMI ContactList
// entry) came with, for the address it registered from.
func (a *Aggregator) AddContact(from netip.Addr, userAgent string) {
	if from.IsValid() && userAgent != "" {
		a.agents[from.Unmap()] = strings.Clone(userAgent)
	}
}

// Inputs returns the aggregates as report inputs, in address order. Offline
// there is no daemon decision: the status is "none", or "flagged" for a
// source with injection evidence, until Build works out what the
// configured firewall does with it.
func (a *Aggregator) Inputs() []Input {
	out := make([]Input, 0, len(a.sources))
	for _, s := range a.sources {
		in := Input{Source: s.Source, Status: StatusNone, Events: s.events, Unanswered: len(s.challenged),
			AccountsOK: s.accountsOK, Local: a.own[s.Addr]}
		if ua, ok := a.agents[s.Addr]; ok {
			in.LastUserAgent = ua
		}
		if s.Counts.Injection > 0 {
			in.Status = StatusFlagged
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(x, y Input) int { return x.Addr.Compare(y.Addr) })
	return out
}
