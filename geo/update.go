package geo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// listKey names one list: a country and a family.
type listKey struct {
	cc string // upper case
	v6 bool
}

func (k listKey) family() string {
	if k.v6 {
		return "ipv6"
	}
	return "ipv4"
}

// String is the list's name and cache file stem: "jp-ipv4".
func (k listKey) String() string { return strings.ToLower(k.cc) + "-" + k.family() }

// listState is one last-good list, kept only as its merged address ranges:
// 8 bytes per IPv4 range, 32 per IPv6 range, where the normalised prefixes
// cost 32 bytes each (and there are more prefixes than ranges). A list read
// from a file or download owns its ranges until a snapshot's index is built
// over them; from then on it is a view of that index (ix, id: the ranges
// tagged with its country), so every range is held once, not twice.
// Prefixes are derived when a diff needs them.
type listState struct {
	v4 []uint32 // owned IPv4 ranges: first, last pairs, sorted and disjoint
	v6 []span   // owned IPv6 ranges: sorted and disjoint

	ix   *Index // when set, the ranges are ix's tagged id, of family fam6
	id   uint16
	fam6 bool

	n    int // normalised prefixes
	meta listMeta
}

// newListState keeps ps (normalised: sorted, disjoint) as ranges.
func newListState(ps []netip.Prefix, meta listMeta) *listState {
	var v4, v6 []span
	if len(ps) > 0 && ps[0].Addr().Is4() {
		v4 = make([]span, 0, len(ps))
	} else {
		v6 = make([]span, 0, len(ps))
	}
	for _, p := range ps {
		if p.Addr().Is4() {
			v4 = append(v4, prefixSpan(p))
		} else {
			v6 = append(v6, prefixSpan(p))
		}
	}
	return ownedList(mergeSpans(v4), mergeSpans(v6), len(ps), meta)
}

// ownedList keeps copies of exactly the given merged ranges (the callers'
// slices are scratch, often sized for every prefix).
func ownedList(v4, v6 []span, n int, meta listMeta) *listState {
	l := &listState{n: n, meta: meta}
	if len(v4) > 0 {
		l.v4 = make([]uint32, 0, 2*len(v4))
		for _, s := range v4 {
			l.v4 = append(l.v4, uint32(s.first.lo), uint32(s.last.lo))
		}
	}
	if len(v6) > 0 {
		l.v6 = slices.Clone(v6)
	}
	return l
}

// spans returns the list's ranges (IPv4 ones, and all of a view's, built
// fresh; owned IPv6 ones shared: never modify them).
func (l *listState) spans() (v4, v6 []span) {
	if l.ix != nil {
		if l.fam6 {
			return nil, l.ix.spansOf(l.id, true)
		}
		return l.ix.spansOf(l.id, false), nil
	}
	v4 = make([]span, 0, len(l.v4)/2)
	for i := 0; i+1 < len(l.v4); i += 2 {
		v4 = append(v4, span{u128{0, uint64(l.v4[i])}, u128{0, uint64(l.v4[i+1])}})
	}
	return v4, l.v6
}

// viewIn returns the list as a view of ix, whose ranges for country cc
// must be exactly v4 and v6 (the list's own). Where another country's
// overlapping list won some of these addresses in the index — RIR lists
// never overlap, hand-made ones may — the index's ranges differ, and the
// list keeps its own copy so that its diffs and prefixes stay its own.
func (l *listState) viewIn(ix *Index, k listKey, v4, v6 []span) *listState {
	mine := v4
	if k.v6 {
		mine = v6
	}
	if id, ok := ix.countryID(k.cc); ok && slices.Equal(ix.spansOf(id, k.v6), mine) {
		return &listState{ix: ix, id: id, fam6: k.v6, n: l.n, meta: l.meta}
	}
	if l.ix == nil {
		return l
	}
	return ownedList(v4, v6, l.n, l.meta)
}

// prefixes derives the normalised prefixes (a fresh slice).
func (l *listState) prefixes() []netip.Prefix {
	v4, v6 := l.spans()
	out := make([]netip.Prefix, 0, l.n)
	for _, s := range v4 {
		out = appendSpanPrefixes(out, s, true)
	}
	for _, s := range v6 {
		out = appendSpanPrefixes(out, s, false)
	}
	return out
}

// withMeta is the same list with other metadata (the ranges are shared:
// they are never modified).
func (l *listState) withMeta(meta listMeta) *listState {
	c := *l
	c.meta = meta
	return &c
}

// listMeta is kept beside a stored last good list (<name>.meta.json).
type listMeta struct {
	Source       string    `json:"source"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Fetched      time.Time `json:"fetched"`         // content last downloaded and accepted (lists_dir: the file's mtime)
	Verified     time.Time `json:"verified"`        // content last confirmed current (200 or 304; lists_dir: the file's mtime)
	Entries      int       `json:"entries"`         // normalised prefixes
	Lines        int       `json:"lines,omitempty"` // CIDR lines of the stored copy: a cache file that no longer has them changed on disk
	// Stored is when this copy became the last good one; a stored copy
	// newer than the live list (`lists accept`, or `lists update` while
	// the daemon runs) is what the next check compares against.
	Stored time.Time `json:"stored,omitzero"`
	// Accepted is set when an admin took this copy with `lists accept`,
	// past the floor, shrink and churn guards.
	Accepted time.Time `json:"accepted,omitzero"`
}

// Decision is what an update did with one list.
type Decision string

const (
	DecisionUpdated     Decision = "updated"      // new content accepted (dry-run: would be)
	DecisionUnchanged   Decision = "unchanged"    // fetched or read, same prefixes
	DecisionNotModified Decision = "not-modified" // HTTP 304
	DecisionRejected    Decision = "rejected"     // content failed a check; last good list kept
	DecisionFailed      Decision = "failed"       // fetch or read failed; last good list kept
)

// ListResult reports one list of an Update.
type ListResult struct {
	List     string   `json:"list"` // "jp-ipv4"
	Country  string   `json:"country"`
	Family   string   `json:"family"`
	Source   string   `json:"source"`
	Before   int      `json:"before"` // entries in the last good list (0: none)
	After    int      `json:"after"`  // entries in use after the update (or would be, dry-run)
	Added    int      `json:"added"`
	Removed  int      `json:"removed"`
	Lines    int      `json:"lines,omitempty"` // CIDR lines of the accepted candidate (what geo.min_entries counts)
	Decision Decision `json:"decision"`
	Check    string   `json:"check,omitempty"` // for rejected and failed: which check (Check* names)
	Reason   string   `json:"reason,omitempty"`
	DryRun   bool     `json:"dry_run,omitempty"`
}

// Kept reports whether the update was refused and the last good list kept.
func (r ListResult) Kept() bool {
	return r.Decision == DecisionRejected || r.Decision == DecisionFailed
}

// ErrListsKept is wrapped by Update's error when at least one list was
// rejected or failed to download and its last good version (if any) stays
// in use.
var ErrListsKept = errors.New("geo: some lists were not updated")

// Update fetches (or re-reads, with lists_dir) every allowed country's lists,
// checks them against the last good versions and atomically swaps the
// accepted ones in. With dryRun nothing is written or swapped. The error
// wraps ErrListsKept when any list was rejected or failed; results are
// returned either way.
func (g *Geo) Update(ctx context.Context, dryRun bool) ([]ListResult, error) {
	g.updateMu.Lock()
	defer g.updateMu.Unlock()
	old := g.snap.Load()
	next := maps.Clone(old.lists)
	var results []ListResult
	var reasons []error
	changed, contentChanged := false, false

	keys, paths, err := g.updateTargets()
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			// Lists accepted so far are already stored: swap them in too.
			reasons = append(reasons, ctx.Err())
			break
		}
		live := old.lists[k]
		res, use := g.checkOne(ctx, k, paths[k], live, true, dryRun)
		res.DryRun = dryRun
		results = append(results, res)
		if !dryRun && use != nil && use != live {
			if live != nil && sameRanges(use, live) {
				// Same ranges: keep live's (a view of the current index)
				// rather than a second, owned copy of them.
				use = live.withMeta(use.meta)
			} else {
				contentChanged = true
			}
			next[k] = use
			changed = true
		}
		if ctx.Err() != nil {
			continue // shutting down: not the source's fault, don't count or log it
		}
		if res.Kept() {
			reasons = append(reasons, fmt.Errorf("%s %s: %s", k, res.Decision, res.Reason))
		}
		if dryRun {
			g.log.Info("geo: list checked (dry run)", "list", k.String(), "decision", string(res.Decision),
				"before", res.Before, "after", res.After, "added", res.Added, "removed", res.Removed, "reason", res.Reason)
			continue
		}
		g.met.updates.WithLabelValues(k.String(), string(res.Decision)).Inc()
		g.account(k, res, use)
	}
	switch {
	case contentChanged:
		g.snap.Store(g.newSnapshot(next))
	case changed:
		// Only metadata (check times, ETags) moved: keep the built indexes.
		s := *old
		s.lists = next
		g.snap.Store(&s)
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("geo: list update interrupted: %w", err)
	}
	if len(reasons) > 0 {
		return results, fmt.Errorf("%w: %w", ErrListsKept, errors.Join(reasons...))
	}
	return results, nil
}

// checkOne decides one list: it reads the source (fetch false: at start
// without lists_dir, where the stored last good copy is all there is),
// checks it against the last good copy and returns the result and the list
// to use — the candidate if it passed, else the last good copy, nil when
// there is none at all. live is the list in use now (nil at start).
func (g *Geo) checkOne(ctx context.Context, k listKey, path string, live *listState, fetch, dryRun bool) (ListResult, *listState) {
	prev := g.lastGood(k, live)
	if live != nil && prev != live && !prev.meta.Accepted.IsZero() && !dryRun {
		g.log.Warn("geo: taking the list an admin accepted with `sipsentry lists accept`", "list", k.String(),
			"file", prev.meta.Source, "accepted", prev.meta.Accepted.Format(time.RFC3339), "entries", prev.n)
	}
	var res ListResult
	var nl *listState
	switch {
	case !fetch:
		res = result(k, g.listURL(k), prev)
		res.Decision = DecisionUnchanged
		if prev == nil {
			res, _ = kept(res, DecisionFailed, CheckMissing, "not downloaded yet: run `sipsentry lists update`, or wait for the daemon's first refresh")
			if lp, _ := g.cachePaths(k); g.opts.StateDir != "" {
				if _, err := os.Stat(lp); err == nil {
					res, _ = kept(res, DecisionFailed, CheckCache, "the stored copy %s is unusable (the log says why): it is downloaded again at the daemon's first refresh, or now with `sipsentry lists update`", lp)
				}
			}
		}
	case g.opts.ListsDir != "":
		res, nl = g.updateLocal(k, path, prev, dryRun)
	default:
		res, nl = g.updateRemote(ctx, k, prev, dryRun)
	}
	if nl == nil {
		nl = prev
	}
	return res, nl
}

// account logs one clear line for a list that was not updated, counts a
// refusal and records the outcome for Health.
func (g *Geo) account(k listKey, r ListResult, use *listState) {
	g.note(k, r, use)
	if !r.Kept() {
		g.log.Info("geo: list checked", "list", k.String(), "decision", string(r.Decision),
			"before", r.Before, "after", r.After, "added", r.Added, "removed", r.Removed)
		return
	}
	if r.Decision == DecisionRejected {
		g.met.refused.WithLabelValues(k.String(), r.Check).Inc()
	}
	switch {
	case use == nil && r.Check == CheckMissing && g.opts.ListsDir == "":
		g.log.Warn("geo: no list yet; its country's addresses are not allowed until it is downloaded", "list", k.String(), "reason", r.Reason)
	case use == nil:
		g.log.Error("geo: list refused and there is no good copy: its country's addresses cannot be allowed by country",
			"list", k.String(), "source", r.Source, "check", r.Check, "reason", r.Reason, "fix", g.fixHint(k))
	case r.Decision == DecisionFailed && g.opts.ListsDir == "":
		g.log.Warn("geo: list not updated; the last good list stays in use", "list", k.String(),
			"source", r.Source, "reason", r.Reason, "entries_kept", use.n)
	default:
		g.log.Error("geo: list refused; the last good list stays in use", "list", k.String(),
			"source", r.Source, "check", r.Check, "reason", r.Reason, "entries_kept", use.n, "fix", g.fixHint(k))
	}
}

// fixHint says what resolves a refused list.
func (g *Geo) fixHint(k listKey) string {
	if g.opts.ListsDir != "" {
		return fmt.Sprintf("restore a complete %s.txt in %s, or take a deliberate change with `sipsentry lists accept %s`",
			k, g.opts.ListsDir, filepath.Join(g.opts.ListsDir, k.String()+".txt"))
	}
	return "the source is checked again at the next refresh (`sipsentry lists update` checks now); a deliberate change: download the file and run `sipsentry lists accept FILE`"
}

// lastGood is the list the next candidate is checked against: the live
// one, unless the stored copy is newer (taken by `lists accept`, or stored
// by `lists update` while this process ran). At start (live nil) it is the
// stored copy, if any.
func (g *Geo) lastGood(k listKey, live *listState) *listState {
	if g.opts.StateDir == "" {
		return live
	}
	if live != nil {
		meta, err := g.readMeta(k)
		if err != nil || !meta.Stored.After(live.meta.Stored) {
			return live
		}
	}
	c, err := g.readCache(k)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			g.log.Error("geo: the stored last good copy of a list is unusable", "list", k.String(), "err", err)
		}
		return live
	}
	return c
}

// updateTargets lists what Update looks at: the allowed countries' lists,
// plus, with lists_dir, every list file present there.
func (g *Geo) updateTargets() ([]listKey, map[listKey]string, error) {
	seen := map[listKey]bool{}
	var keys []listKey
	for _, cc := range g.allow {
		for _, v6 := range []bool{false, true} {
			k := listKey{cc, v6}
			seen[k] = true
			keys = append(keys, k)
		}
	}
	var paths map[listKey]string
	if g.opts.ListsDir != "" {
		var err error
		if paths, err = scanListsDir(g.opts.ListsDir); err != nil {
			return nil, nil, fmt.Errorf("geo: geo.lists_dir = %q: %w", g.opts.ListsDir, err)
		}
		for k := range paths {
			if !seen[k] {
				keys = append(keys, k)
			}
		}
	}
	slices.SortFunc(keys, func(a, b listKey) int { return strings.Compare(a.String(), b.String()) })
	return keys, paths, nil
}

// result starts a ListResult for k against the last good list.
func result(k listKey, source string, prev *listState) ListResult {
	r := ListResult{List: k.String(), Country: k.cc, Family: k.family(), Source: source}
	if prev != nil {
		r.Before, r.After = prev.n, prev.n
	}
	return r
}

func kept(r ListResult, d Decision, check, format string, args ...any) (ListResult, *listState) {
	r.Decision, r.Check, r.Reason = d, check, fmt.Sprintf(format, args...)
	return r, nil
}

// accept fills the counts for a candidate list that passed its checks.
func accept(r ListResult, prev *listState, ps []netip.Prefix) ListResult {
	r.After = len(ps)
	if prev == nil {
		r.Added = len(ps)
		r.Decision = DecisionUpdated
		return r
	}
	r.Added, r.Removed = diffCount(prev.prefixes(), ps)
	r.Decision = DecisionUpdated
	if r.Added == 0 && r.Removed == 0 {
		r.Decision = DecisionUnchanged
	}
	return r
}

// listURL fills the {cc} placeholder (lower case, as ipverse names its
// directories) of the family's template.
func (g *Geo) listURL(k listKey) string {
	t := g.opts.ListURLv4
	if k.v6 {
		t = g.opts.ListURLv6
	}
	return strings.ReplaceAll(t, "{cc}", strings.ToLower(k.cc))
}

// store keeps body as k's last good copy in <state_dir>/lists (not for a
// read-only Geo) and stamps meta.Stored when it did.
func (g *Geo) store(k listKey, body []byte, meta *listMeta) {
	if !g.opts.StoreLastGood || g.opts.StateDir == "" {
		return
	}
	meta.Stored = g.now()
	if err := g.writeCache(k, body, *meta); err != nil {
		meta.Stored = time.Time{}
		// Still use it: it passed its checks; only the copy a restart
		// falls back to is missing.
		g.log.Error("geo: could not keep the last good copy of a list; it is used, but a restart cannot fall back to it",
			"list", k.String(), "dir", g.listsCacheDir(), "err", err)
	}
}

func (g *Geo) updateRemote(ctx context.Context, k listKey, prev *listState, dryRun bool) (ListResult, *listState) {
	url := g.listURL(k)
	r := result(k, url, prev)
	if timeout := g.opts.DownloadTimeout; timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return kept(r, DecisionFailed, CheckDownload, "bad URL from geo.list_url_%s: %v", strings.TrimPrefix(k.family(), "ip"), err)
	}
	req.Header.Set("User-Agent", "sipsentry-geo (+https://github.com/sipsentry/sipsentry)")
	// Conditional headers only when the cache is for this same URL.
	if prev != nil && prev.meta.Source == url {
		if prev.meta.ETag != "" {
			req.Header.Set("If-None-Match", prev.meta.ETag)
		}
		if prev.meta.LastModified != "" {
			req.Header.Set("If-Modified-Since", prev.meta.LastModified)
		}
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return kept(r, DecisionFailed, CheckDownload, "download: %s", errText(err))
	}
	defer resp.Body.Close()
	now := g.now()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		if prev == nil {
			return kept(r, DecisionFailed, CheckDownload, "server answered 304 Not Modified but there is no stored list")
		}
		r.Decision = DecisionNotModified
		if dryRun {
			return r, nil
		}
		nl := prev.withMeta(prev.meta)
		nl.meta.Verified = now
		if !g.opts.StoreLastGood || g.opts.StateDir == "" {
			return r, nl
		}
		if err := g.writeMeta(k, nl.meta); err != nil {
			g.log.Warn("geo: could not record the list check time", "list", k.String(), "err", err)
		}
		return r, nl
	default:
		return kept(r, DecisionFailed, CheckDownload, "HTTP %s from %s", resp.Status, url)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt == "text/html" {
			return kept(r, DecisionRejected, CheckHTML, "the server sent an HTML page (Content-Type %s), not a CIDR list", mt)
		}
	}
	limit := g.maxBytes()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return kept(r, DecisionFailed, CheckDownload, "download interrupted after %d bytes: %s", len(body), errText(err))
	}
	if int64(len(body)) > limit {
		return kept(r, DecisionRejected, CheckSize, "larger than geo.max_download_bytes = %d", limit)
	}
	ps, lines, ref := parseCandidate(k, body)
	if ref != nil {
		return kept(r, DecisionRejected, ref.check, "%s", ref.reason)
	}
	meta := listMeta{Source: url, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"),
		Fetched: now, Verified: now, Entries: len(ps), Lines: lines}
	cand := newListState(ps, meta)
	if ref := g.guard(prev, cand, lines); ref != nil {
		return kept(r, DecisionRejected, ref.check, "%s", ref.reason)
	}
	r = accept(r, prev, ps)
	r.Lines = lines
	if dryRun {
		return r, nil
	}
	g.store(k, body, &cand.meta)
	return r, cand
}

// errText says why a download failed in one short phrase an admin
// understands, without Go's nested "Get ...: dial tcp ...: lookup ..." text.
func errText(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out (geo.download_timeout)"
	case errors.As(err, &dns):
		return fmt.Sprintf("cannot resolve %s (no network or no DNS?)", dns.Name)
	case errors.As(err, &op) && op.Op == "dial":
		cause := op.Err
		var sys *os.SyscallError
		if errors.As(cause, &sys) {
			cause = sys.Err // "connection refused", not "connect: connection refused"
		}
		return fmt.Sprintf("cannot connect to %s: %v", op.Addr, cause)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

func (g *Geo) updateLocal(k listKey, path string, prev *listState, dryRun bool) (ListResult, *listState) {
	r := result(k, path, prev)
	if path == "" {
		return kept(r, DecisionFailed, CheckMissing, "no %s.txt or %s-aggregated.txt in geo.lists_dir = %q", k, k, g.opts.ListsDir)
	}
	body, mtime, ref, err := readCapped(path, g.maxBytes())
	if err != nil {
		return kept(r, DecisionFailed, CheckMissing, "%v", err)
	}
	if ref != nil {
		return kept(r, DecisionRejected, ref.check, "%s", ref.reason)
	}
	ps, lines, ref := parseCandidate(k, body)
	if ref != nil {
		return kept(r, DecisionRejected, ref.check, "%s", ref.reason)
	}
	meta := listMeta{Source: path, Fetched: mtime, Verified: mtime, Entries: len(ps), Lines: lines}
	cand := newListState(ps, meta)
	if ref := g.guard(prev, cand, lines); ref != nil {
		return kept(r, DecisionRejected, ref.check, "%s", ref.reason)
	}
	r = accept(r, prev, ps)
	r.Lines = lines
	if dryRun {
		return r, nil
	}
	if r.Decision == DecisionUnchanged && prev != nil && !prev.meta.Stored.IsZero() {
		// Already the stored copy: only the check time moves.
		m := prev.meta
		m.Source, m.Verified = path, mtime
		return r, prev.withMeta(m)
	}
	g.store(k, body, &cand.meta)
	return r, cand
}

// listFileRE matches lists_dir file names: jp-ipv4.txt, jp-ipv4-aggregated.txt.
var listFileRE = regexp.MustCompile(`^([A-Za-z]{2})-ipv([46])(-aggregated)?\.txt$`)

// scanListsDir maps each list found in dir to its file. When both names
// exist, the plain <cc>-ipv4.txt wins.
func scanListsDir(dir string) (map[listKey]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[listKey]string{}
	for _, e := range ents {
		m := listFileRE.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		k := listKey{strings.ToUpper(m[1]), m[2] == "6"}
		if _, dup := out[k]; dup && m[3] != "" {
			continue
		}
		out[k] = filepath.Join(dir, e.Name())
	}
	return out, nil
}

func (g *Geo) cachePaths(k listKey) (list, meta string) {
	base := filepath.Join(g.listsCacheDir(), k.String())
	return base + ".txt", base + ".meta.json"
}

func (g *Geo) readMeta(k listKey) (listMeta, error) {
	_, mp := g.cachePaths(k)
	var meta listMeta
	mb, err := os.ReadFile(mp)
	if err == nil {
		err = json.Unmarshal(mb, &meta)
	}
	return meta, err
}

// readCache loads the stored last good copy. It passed its checks (or was
// accepted by the admin) before it was stored, so parsing is repeated and
// its line count compared with the one stored beside it: a copy truncated
// or edited on disk is not a good copy.
func (g *Geo) readCache(k listKey) (*listState, error) {
	lp, _ := g.cachePaths(k)
	b, err := os.ReadFile(lp)
	if err != nil {
		return nil, err
	}
	ps, lines, ref := parseCandidate(k, b)
	if ref != nil {
		return nil, fmt.Errorf("%s: %s", lp, ref.reason)
	}
	meta, err := g.readMeta(k)
	if err != nil {
		// The list itself is good; without its metadata the next download
		// is unconditional and the age is the file's.
		g.log.Warn("geo: list cache metadata unreadable; using the list with its file time", "list", k.String(), "err", err)
		meta = listMeta{}
		if fi, err := os.Stat(lp); err == nil {
			meta.Fetched, meta.Verified = fi.ModTime(), fi.ModTime()
		}
	}
	if meta.Lines > 0 && meta.Lines != lines {
		return nil, fmt.Errorf("%s holds %d CIDR lines where %d were stored: it changed on disk, so it is not a good copy", lp, lines, meta.Lines)
	}
	meta.Entries = len(ps)
	return newListState(ps, meta), nil
}

// writeCache stores the list, then its metadata, each atomically.
func (g *Geo) writeCache(k listKey, body []byte, meta listMeta) error {
	lp, _ := g.cachePaths(k)
	if err := os.MkdirAll(g.listsCacheDir(), 0o755); err != nil {
		return err
	}
	if err := writeAtomic(lp, body); err != nil {
		return err
	}
	return g.writeMeta(k, meta)
}

func (g *Geo) writeMeta(k listKey, meta listMeta) error {
	_, mp := g.cachePaths(k)
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(mp, append(b, '\n'))
}

// writeAtomic writes a temp file in the same directory, syncs it and renames
// it over path, so readers see the old file or the new one, never half.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
