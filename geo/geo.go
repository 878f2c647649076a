// Package geo answers "which country is this address in" two ways — by the
// RIR delegation lists of the allowed countries (what the firewall's
// allow-country set is built from) and by a MaxMind DB — and keeps the lists
// fresh without ever letting a broken download shrink them.
//
// List sources: geo.list_url_v4 / geo.list_url_v6 are templates whose {cc}
// becomes the lower-case country code. The default is the ipverse lists
// (raw.githubusercontent.com/ipverse/rir-ip/master/country/{cc}/ipv4-aggregated.txt);
// upstream renamed that repository ipverse/country-ip-blocks in 2026 with the
// same country/{cc}/ipv{4,6}-aggregated.txt files, so either name works in the
// template. geo.lists_dir replaces downloads with local <cc>-ipv4.txt /
// <cc>-ipv6.txt files (the ipverse <cc>-ipv4-aggregated.txt names too).
//
// geo is a leaf: it knows nothing of firewalls, AMI or the engine. It must
// never replace a good list with one that failed to download or to parse,
// fell under the floor, or shrank or changed more than allowed — downloaded
// or local, at start or on reload (guard.go; the last good copies live in
// <state_dir>/lists, and only `lists accept` takes a list past the guards);
// it must never crash or refuse to start because a database file is
// missing; and it must never block a lookup on I/O (lists and databases
// are swapped in atomically).
package geo

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Verdict is the cross-check of one address.
type Verdict struct {
	IP netip.Addr `json:"ip"`
	// MMDBCountry is the database's ISO code, "" when the database has none
	// for the address, "?" when no country database is loaded.
	MMDBCountry string `json:"mmdb_country"`
	// ListCountry is the country whose list holds the address, "" if none.
	ListCountry string `json:"list_country"`
	// InAllowed: the address is in an allowed country's list.
	InAllowed bool   `json:"in_allowed"`
	ASN       uint   `json:"asn"`
	Org       string `json:"org"`
	// Disagree: both sources have an opinion and they differ — the lists
	// put the address in another country than the database, or the database
	// names a country whose list (of the address's family) is loaded but does
	// not hold the address.
	Disagree bool `json:"disagree"`
}

// Geo is the facade the engine, report and commands use. All methods are
// safe for concurrent use; lookups never block on updates.
type Geo struct {
	opts   Options
	log    *slog.Logger
	allow  []string // upper-case, sorted, unique
	client *http.Client
	now    func() time.Time

	snap atomic.Pointer[snapshot]

	country, asn *dbFile

	updateMu sync.Mutex // one Update at a time
	met      *metrics

	problemsMu sync.Mutex // guards problems
	problems   map[listKey]ListProblem
}

// snapshot is one immutable generation of the lists.
type snapshot struct {
	lists   map[listKey]*listState
	allowed *Index // allowed countries only
	other   *Index // lists_dir countries that are not allowed (informational)
}

// Open loads the cached (or lists_dir) lists and the databases. It does no
// network I/O: call Update or Run for that. A missing database or cached
// list is a warning; a database path that is not an mmdb is an error naming
// the setting.
func Open(opts Options, log *slog.Logger) (*Geo, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Geo{
		opts: opts, log: log,
		client:   &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()},
		now:      time.Now,
		met:      newMetrics(),
		problems: map[listKey]ListProblem{},
	}
	for _, cc := range opts.AllowCountries {
		cc = strings.ToUpper(strings.TrimSpace(cc))
		if !isCountryShaped(cc) {
			return nil, fmt.Errorf("geo: geo.allow_countries: unknown country code %q: want an ISO 3166-1 alpha-2 code such as \"JP\"", cc)
		}
		if !slices.Contains(g.allow, cc) {
			g.allow = append(g.allow, cc)
		}
	}
	slices.Sort(g.allow)
	if opts.ListsDir == "" {
		for _, k := range []struct{ key, tmpl string }{{"geo.list_url_v4", opts.ListURLv4}, {"geo.list_url_v6", opts.ListURLv6}} {
			if len(g.allow) > 0 && !strings.Contains(k.tmpl, "{cc}") {
				return nil, fmt.Errorf("geo: %s: template %q has no {cc} placeholder for the country code", k.key, k.tmpl)
			}
		}
	}
	if opts.ListsDir != "" && opts.StateDir != "" && sameDir(opts.ListsDir, g.listsCacheDir()) {
		return nil, fmt.Errorf("geo: geo.lists_dir = %q is where sipsentry keeps the last good copies of the lists (<state_dir>/lists): keep your list files in another directory", opts.ListsDir)
	}
	var err error
	if g.country, err = openDB("geo.mmdb", opts.MMDB, g.mmdbCopyDir(), func(s schema) bool { return s == schemaGeoIP2 || s == schemaFlat }, log); err != nil {
		return nil, err
	}
	if g.asn, err = openDB("geo.asn_mmdb", opts.ASNMMDB, g.mmdbCopyDir(), func(s schema) bool { return s == schemaASN }, log); err != nil {
		return nil, err
	}
	lists, err := g.loadInitial()
	if err != nil {
		return nil, err
	}
	g.snap.Store(g.newSnapshot(lists))
	return g, nil
}

// Allowed reports whether a is in an allowed country's list.
func (g *Geo) Allowed(a netip.Addr) bool {
	_, ok := g.snap.Load().allowed.Country(a)
	return ok
}

// ListCountry returns the country whose loaded list holds a ("" if none).
func (g *Geo) ListCountry(a netip.Addr) string {
	s := g.snap.Load()
	if cc, ok := s.allowed.Country(a); ok {
		return cc
	}
	cc, _ := s.other.Country(a)
	return cc
}

// MMDBCountry returns the country database's answer for a: "?" when no
// database is loaded, "" when it has no country for a.
func (g *Geo) MMDBCountry(a netip.Addr) string { return g.country.country(a.Unmap()) }

// Lookup cross-checks one address.
func (g *Geo) Lookup(a netip.Addr) Verdict {
	a = a.Unmap()
	s := g.snap.Load()
	v := Verdict{IP: a, MMDBCountry: g.country.country(a)}
	if cc, ok := s.allowed.Country(a); ok {
		v.ListCountry, v.InAllowed = cc, true
	} else if cc, ok := s.other.Country(a); ok {
		v.ListCountry = cc
	}
	v.ASN, v.Org = g.asn.asn(a)
	if m := v.MMDBCountry; m != "" && m != "?" {
		// A list only counts as "not in m" if m's list of this family is loaded.
		v.Disagree = (v.ListCountry != "" && v.ListCountry != m) ||
			(v.ListCountry == "" && s.lists[listKey{m, !a.Is4()}] != nil)
	}
	return v
}

// AllowedPrefixes returns the normalised prefixes of every allowed country,
// IPv4 then IPv6 — what the firewall's allow-country set should hold. It is
// derived from the index on each call (the daemon needs it only when the
// lists change), so the caller owns the slice.
func (g *Geo) AllowedPrefixes() []netip.Prefix { return g.snap.Load().allowed.unionPrefixes() }

// AllowCountries returns the allowed country codes, sorted.
func (g *Geo) AllowCountries() []string { return slices.Clone(g.allow) }

// ListAges returns, per list ("jp-ipv4"), the time since its content was
// last confirmed: fetched or answered 304, or for lists_dir the file's mtime.
func (g *Geo) ListAges() map[string]time.Duration {
	now := g.now()
	out := map[string]time.Duration{}
	for k, l := range g.snap.Load().lists {
		if !l.meta.Verified.IsZero() {
			out[k.String()] = now.Sub(l.meta.Verified)
		}
	}
	return out
}

// Lists describes the loaded lists, sorted by name.
func (g *Geo) Lists() []ListInfo {
	var out []ListInfo
	for k, l := range g.snap.Load().lists {
		out = append(out, ListInfo{Name: k.String(), Country: k.cc, Family: k.family(),
			Allowed: slices.Contains(g.allow, k.cc), Entries: l.n, Source: l.meta.Source,
			Verified: l.meta.Verified})
	}
	slices.SortFunc(out, func(a, b ListInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// ListInfo describes one loaded list.
type ListInfo struct {
	Name     string    `json:"name"` // "jp-ipv4"
	Country  string    `json:"country"`
	Family   string    `json:"family"` // "ipv4" | "ipv6"
	Allowed  bool      `json:"allowed"`
	Entries  int       `json:"entries"`
	Source   string    `json:"source"`
	Verified time.Time `json:"verified"`
}

// Databases describes the configured country and ASN databases.
func (g *Geo) Databases() []DBInfo {
	var out []DBInfo
	for _, d := range []*dbFile{g.country, g.asn} {
		if in := d.info(); in.Setting != "" {
			out = append(out, in)
		}
	}
	return out
}

// Reload re-reads the database files now if they were replaced on disk.
func (g *Geo) Reload() {
	g.country.checkReload()
	g.asn.checkReload()
}

// dbCheckInterval is how often Run looks for replaced database files.
const dbCheckInterval = 5 * time.Second

// Run refreshes the lists on schedule (geo.refresh, ±10% jitter; sooner
// when a list is missing or a refresh failed) and reloads replaced database
// files, until ctx is done. It returns ctx's error.
func (g *Geo) Run(ctx context.Context) error {
	dbTick := time.NewTicker(dbCheckInterval)
	defer dbTick.Stop()
	refresh := g.opts.Refresh
	var timer *time.Timer
	var timerC <-chan time.Time
	schedule := func(d time.Duration) {
		if refresh <= 0 {
			return
		}
		if timer == nil {
			timer = time.NewTimer(d)
			timerC = timer.C
			return
		}
		timer.Reset(d)
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	schedule(g.firstRefresh(refresh))
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-dbTick.C:
			g.Reload()
		case <-timerC:
			_, err := g.Update(ctx, false)
			next := jitter(refresh)
			if err != nil && ctx.Err() == nil {
				next = jitter(min(refresh, retryAfterFailure))
				g.log.Warn("geo: list refresh incomplete (each list's line above says what is in use)", "err", err, "retry_in", next.Round(time.Second))
			}
			schedule(next)
		}
	}
}

// retryAfterFailure bounds how long a failed refresh waits to try again.
const retryAfterFailure = time.Hour

// firstRefresh is due now when an allowed list is missing, else when the
// oldest list reaches the refresh age.
func (g *Geo) firstRefresh(refresh time.Duration) time.Duration {
	s := g.snap.Load()
	due := jitter(refresh)
	for _, cc := range g.allow {
		for _, v6 := range []bool{false, true} {
			l := s.lists[listKey{cc, v6}]
			if l == nil {
				return time.Second
			}
			if d := refresh - g.now().Sub(l.meta.Verified); d < due {
				due = max(d, time.Second)
			}
		}
	}
	return due
}

// isCountryShaped accepts two ASCII letters: which codes exist is the
// configuration's judgement (it knows ISO 3166-1); geo only needs a code it
// can put in a file name and a URL safely.
func isCountryShaped(cc string) bool {
	return len(cc) == 2 && cc[0] >= 'A' && cc[0] <= 'Z' && cc[1] >= 'A' && cc[1] <= 'Z'
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// newSnapshot builds the indexes for one generation of lists, straight
// from the lists' ranges.
func (g *Geo) newSnapshot(lists map[listKey]*listState) *snapshot {
	allowed := map[string]*ccSpans{}
	other := map[string]*ccSpans{}
	type ranges struct{ v4, v6 []span }
	own := make(map[listKey]ranges, len(lists))
	for k, l := range lists {
		m := other
		if slices.Contains(g.allow, k.cc) {
			m = allowed
		}
		c := m[k.cc]
		if c == nil {
			c = &ccSpans{}
			m[k.cc] = c
		}
		v4, v6 := l.spans()
		own[k] = ranges{v4, v6}
		c.v4 = append(c.v4, v4...)
		c.v6 = append(c.v6, v6...)
		c.n += l.n
	}
	s := &snapshot{lists: make(map[listKey]*listState, len(lists)),
		allowed: newIndexSpans(allowed), other: newIndexSpans(other)}
	// The lists become views of the new indexes, so each range is held once
	// and the previous generation's index is freed with its snapshot.
	for k, l := range lists {
		ix := s.other
		if slices.Contains(g.allow, k.cc) {
			ix = s.allowed
		}
		s.lists[k] = l.viewIn(ix, k, own[k].v4, own[k].v6)
	}
	return s
}

// mmdbCopyDir is where the private copies of the databases are mapped
// from: the state dir when it exists (never created here: one-shot commands
// run by a user without it simply read the file into memory).
func (g *Geo) mmdbCopyDir() string {
	if g.opts.StateDir == "" {
		return ""
	}
	if fi, err := os.Stat(g.opts.StateDir); err != nil || !fi.IsDir() {
		return ""
	}
	return g.opts.StateDir
}

// sameDir reports whether a and b name the same directory (absolute,
// cleaned; symlinks resolved where they exist).
func sameDir(a, b string) bool {
	norm := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		return filepath.Clean(p)
	}
	return norm(a) == norm(b)
}

// listsCacheDir is where downloaded lists are kept.
func (g *Geo) listsCacheDir() string { return filepath.Join(g.opts.StateDir, "lists") }

// loadInitial loads what Open starts with: each list_dir file that passes
// its checks against the stored last good copy (else that copy), or without
// lists_dir the stored copies of the downloads. Lists with no good copy at
// all are reported by Health.
func (g *Geo) loadInitial() (map[listKey]*listState, error) {
	keys, paths, err := g.updateTargets()
	if err != nil {
		return nil, err
	}
	lists := map[listKey]*listState{}
	for _, k := range keys {
		res, use := g.checkOne(context.Background(), k, paths[k], nil, g.opts.ListsDir != "", false)
		g.account(k, res, use)
		if use != nil {
			lists[k] = use
		}
	}
	return lists, nil
}
