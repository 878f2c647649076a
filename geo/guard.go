package geo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// The checks every list passes before it may replace the last good one,
// downloaded or local alike. The name is the metric label
// (sipsentry_geo_list_refused_total{check}), ListResult.Check and
// ListProblem.Check.
const (
	CheckMissing  = "missing"  // no file (lists_dir) or nothing downloaded yet
	CheckDownload = "download" // the download failed (network, HTTP status)
	CheckSize     = "size"     // larger than geo.max_download_bytes
	CheckHTML     = "html"     // an HTML/JSON page or other non-list (ErrNotAList)
	CheckFamily   = "family"   // an IPv6 CIDR in an IPv4 list or the reverse
	CheckParse    = "parse"    // a line that is not a CIDR
	CheckFloor    = "floor"    // fewer CIDR lines than geo.min_entries
	CheckShrink   = "shrink"   // covers too few of the last good list's addresses
	CheckChurn    = "churn"    // too many addresses changed against the last good list
	CheckCache    = "cache"    // the stored last good copy changed on disk
)

// errWrongFamily is wrapped by ParseList's error for a CIDR of the other
// family.
var errWrongFamily = errors.New("geo: wrong address family")

// refusal is why a candidate list is not used.
type refusal struct{ check, reason string }

func (r *refusal) Error() string { return r.reason }

func refuse(check, format string, args ...any) *refusal {
	return &refusal{check, fmt.Sprintf(format, args...)}
}

// parseCandidate parses body as k's family: the normalised prefixes and
// the number of CIDR lines as written (what geo.min_entries counts).
func parseCandidate(k listKey, body []byte) ([]netip.Prefix, int, *refusal) {
	ps, err := ParseList(bytes.NewReader(body), k.v6)
	if err != nil {
		check := CheckParse
		switch {
		case errors.Is(err, ErrNotAList):
			check = CheckHTML
		case errors.Is(err, errWrongFamily):
			check = CheckFamily
		}
		return nil, 0, &refusal{check, strings.TrimPrefix(err.Error(), "geo: ")}
	}
	return Normalize(ps), len(ps), nil
}

// guard applies the floor, the shrink guard and the churn guard to a
// parsed candidate with lines CIDR lines, against the last good list prev
// (nil: there is none, and only the floor applies).
func (g *Geo) guard(prev, cand *listState, lines int) *refusal {
	if prev != nil && sameRanges(prev, cand) {
		// Exactly the last good list: it passed these checks, or the admin
		// took it with `lists accept` (a small list they mean).
		return nil
	}
	if lines < g.opts.MinEntries {
		return refuse(CheckFloor, "only %d CIDR lines, fewer than geo.min_entries = %d", lines, g.opts.MinEntries)
	}
	if prev == nil {
		return nil
	}
	pv4, pv6 := prev.spans()
	cv4, cv6 := cand.spans()
	was, now := spanAddrs(pv4)+spanAddrs(pv6), spanAddrs(cv4)+spanAddrs(cv6)
	if was == 0 {
		return nil
	}
	if s := g.opts.MaxShrink; s > 0 && now < was*(1-s) {
		return refuse(CheckShrink, "shrank to %.1f%% of the last good list's addresses (%d → %d entries), more than geo.max_shrink = %.0f%% less",
			100*now/was, prev.n, cand.n, 100*s)
	}
	if c := g.opts.MaxChurn; c > 0 {
		both := overlapAddrs(pv4, cv4) + overlapAddrs(pv6, cv6)
		churn := (was + now - 2*both) / (was + now)
		if churn > c {
			return refuse(CheckChurn, "%.0f%% of the addresses changed against the last good list (%d → %d entries), more than geo.max_churn = %.0f%%",
				100*churn, prev.n, cand.n, 100*c)
		}
	}
	return nil
}

// size is the number of addresses in s (as a float: IPv6 ranges reach 2^128).
func (s span) size() float64 {
	d := s.last.sub(s.first)
	return float64(d.hi)*0x1p64 + float64(d.lo) + 1
}

func spanAddrs(ss []span) float64 {
	var n float64
	for _, s := range ss {
		n += s.size()
	}
	return n
}

// overlapAddrs counts the addresses in both a and b (each sorted and
// disjoint).
func overlapAddrs(a, b []span) float64 {
	var n float64
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := a[i].first, a[i].last
		if lo.less(b[j].first) {
			lo = b[j].first
		}
		if b[j].last.less(hi) {
			hi = b[j].last
		}
		if !hi.less(lo) {
			n += span{lo, hi}.size()
		}
		if a[i].last.less(b[j].last) {
			i++
		} else {
			j++
		}
	}
	return n
}

// sameRanges reports whether a and b hold exactly the same addresses.
func sameRanges(a, b *listState) bool {
	if a == nil || b == nil {
		return a == b
	}
	av4, av6 := a.spans()
	bv4, bv6 := b.spans()
	return slices.Equal(av4, bv4) && slices.Equal(av6, bv6)
}

// readCapped reads a local list file, at most limit bytes.
func readCapped(path string, limit int64) ([]byte, time.Time, *refusal, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, time.Time{}, nil, fmt.Errorf("%s is not a regular file", path)
	}
	body, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, time.Time{}, nil, err
	}
	if int64(len(body)) > limit {
		return nil, time.Time{}, refuse(CheckSize, "%s is larger than geo.max_download_bytes = %d", path, limit), nil
	}
	return body, fi.ModTime(), nil, nil
}

// maxBytes is the size cap of one list (download or file).
func (g *Geo) maxBytes() int64 {
	if g.opts.MaxDownloadBytes <= 0 {
		return 16 << 20
	}
	return g.opts.MaxDownloadBytes
}
