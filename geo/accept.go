package geo

import (
	"fmt"
	"maps"
	"path/filepath"
	"strings"
)

// Accept takes the file at path as its list's last good copy past the
// floor, shrink and churn guards: the admin's explicit "I mean this list"
// (`sipsentry lists accept FILE`). It must still be a list: named
// <cc>-ipv4.txt or <cc>-ipv6.txt (or the -aggregated names), within the
// size cap, and parsing as its family. It is stored in <state_dir>/lists and
// used here at once; a running daemon takes it at its next reload or
// refresh, because the stored copy is then newer than its live one.
func (g *Geo) Accept(path string) (ListResult, error) {
	m := listFileRE.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return ListResult{}, fmt.Errorf("geo: %s: the file name says which list it is: name it <cc>-ipv4.txt or <cc>-ipv6.txt (e.g. jp-ipv4.txt)", path)
	}
	k := listKey{strings.ToUpper(m[1]), m[2] == "6"}
	if !g.opts.StoreLastGood || g.opts.StateDir == "" {
		return ListResult{}, fmt.Errorf("geo: cannot accept %s: no state directory to keep it in", path)
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	body, mtime, ref, err := readCapped(path, g.maxBytes())
	if err != nil {
		return ListResult{}, fmt.Errorf("geo: %w", err)
	}
	if ref == nil {
		_, _, ref = parseCandidate(k, body)
	}
	if ref != nil {
		return ListResult{}, fmt.Errorf("geo: %s is not accepted (%s check, which accepting does not skip): %s", path, ref.check, ref.reason)
	}
	ps, lines, _ := parseCandidate(k, body)

	g.updateMu.Lock()
	defer g.updateMu.Unlock()
	old := g.snap.Load()
	live := old.lists[k]
	r := accept(result(k, path, live), live, ps)
	r.Lines = lines
	now := g.now()
	meta := listMeta{Source: path, Fetched: mtime, Verified: mtime, Entries: len(ps), Lines: lines, Accepted: now}
	g.store(k, body, &meta)
	if meta.Stored.IsZero() {
		return r, fmt.Errorf("geo: could not store %s in %s (see the log)", path, g.listsCacheDir())
	}
	next := maps.Clone(old.lists)
	next[k] = newListState(ps, meta)
	g.snap.Store(g.newSnapshot(next))
	g.note(k, r, next[k])
	g.log.Warn("geo: list accepted by the admin past the floor, shrink and churn guards", "list", k.String(), "file", path,
		"lines", lines, "before", r.Before, "after", r.After, "added", r.Added, "removed", r.Removed)
	return r, nil
}
