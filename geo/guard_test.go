package geo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// prefixLines writes ps one per line, as a list file.
func prefixLines(ps []netip.Prefix) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintln(&b, p)
	}
	return b.String()
}

// localJP is a lists_dir with the shipped JP lists as jp-ipv4.txt and
// jp-ipv6.txt, and an address inside each.
func localJP(t *testing.T) (dir string, v4, v6 []netip.Prefix, jp4, jp6 netip.Addr) {
	t.Helper()
	v4, v6 = jpLists(t)
	dir = t.TempDir()
	writeFile(t, filepath.Join(dir, "jp-ipv4.txt"), prefixLines(v4))
	writeFile(t, filepath.Join(dir, "jp-ipv6.txt"), prefixLines(v6))
	return dir, v4, v6, v4[len(v4)/2].Addr().Next(), v6[len(v6)/2].Addr().Next()
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func localOptions(dir, state string) Options {
	o := testOptions().at(state)
	o.AllowCountries = []string{"JP"}
	o.ListsDir = dir
	return o
}

func refusedCount(t *testing.T, g *Geo, list, check string) float64 {
	t.Helper()
	reg := gatherMetrics(t, g)
	return reg["sipsentry_geo_list_refused_total,check="+check+",list="+list]
}

// TestLocalListRefusedKeepsLiveSet is #10's critical finding at unit level:
// an empty, a 10-line and an HTML jp-ipv4.txt in lists_dir leave the
// in-country addresses allowed after a reload (Update, what SIGHUP and the
// refresh run) and after a restart (Open on the same state dir), and each
// is a Health problem with the file and the reason, counted.
func TestLocalListRefusedKeepsLiveSet(t *testing.T) {
	for _, tc := range []struct {
		name, body, check string
	}{
		{"empty", "", CheckFloor},
		{"10 lines", "", CheckFloor}, // body filled below from the real list
		{"html", "<!DOCTYPE html>\n<html><body>503 Service Unavailable</body></html>\n", CheckHTML},
		{"wrong family", "2001:db8::/32\n", CheckFamily},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, v4, v6, jp4, jp6 := localJP(t)
			if tc.name == "10 lines" {
				tc.body = prefixLines(v4[:10])
			}
			state := t.TempDir()
			var logs bytes.Buffer
			g, err := Open(localOptions(dir, state), slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if !g.Allowed(jp4) || !g.Allowed(jp6) || len(g.Health()) != 0 {
				t.Fatalf("good lists not in effect at start: health %v", g.Health())
			}
			if _, err := os.Stat(filepath.Join(state, "lists", "jp-ipv4.txt")); err != nil {
				t.Fatalf("the last good copy of a local list is not kept: %v", err)
			}
			bad := filepath.Join(dir, "jp-ipv4.txt")
			writeFile(t, bad, tc.body)

			// Reload.
			logs.Reset()
			rs, err := g.Update(context.Background(), false)
			if !errors.Is(err, ErrListsKept) {
				t.Fatalf("Update = %v, want ErrListsKept", err)
			}
			r := resultFor(t, rs, "jp-ipv4")
			if r.Decision != DecisionRejected || r.Check != tc.check || r.After != len(v4) {
				t.Fatalf("jp-ipv4 = %+v, want rejected by %s with %d entries kept", r, tc.check, len(v4))
			}
			if !g.Allowed(jp4) || !g.Allowed(jp6) || len(g.AllowedPrefixes()) != len(v4)+len(v6) {
				t.Fatal("the refused local list changed the live set")
			}
			line := refusedLogLine(t, logs.String())
			for _, want := range []string{bad, "check=" + tc.check, "list=jp-ipv4", "lists accept"} {
				if !strings.Contains(line, want) {
					t.Errorf("log line %q lacks %q", line, want)
				}
			}
			hs := g.Health()
			if len(hs) != 1 || hs[0].List != "jp-ipv4" || hs[0].Check != tc.check || hs[0].Source != bad ||
				hs[0].NoGoodCopy || hs[0].EntriesInUse != len(v4) {
				t.Fatalf("Health = %+v", hs)
			}
			if got := g.Unenforceable(); len(got) != 0 {
				t.Errorf("Unenforceable = %v with a good copy in use", got)
			}
			if n := refusedCount(t, g, "jp-ipv4", tc.check); n != 1 {
				t.Errorf("refused_total{check=%s} = %v after one refusal", tc.check, n)
			}

			// Restart with the bad file still there.
			g2, err := Open(localOptions(dir, state), quiet())
			if err != nil {
				t.Fatal(err)
			}
			if !g2.Allowed(jp4) || !g2.Allowed(jp6) || len(g2.AllowedPrefixes()) != len(v4)+len(v6) {
				t.Fatal("after a restart the refused local list replaced the last good copy")
			}
			if hs := g2.Health(); len(hs) != 1 || hs[0].Check != tc.check || hs[0].NoGoodCopy {
				t.Fatalf("Health after restart = %+v", hs)
			}

			// The admin restores a complete file: accepted, health clear.
			writeFile(t, bad, prefixLines(v4))
			if _, err := g2.Update(context.Background(), false); err != nil {
				t.Fatal(err)
			}
			if hs := g2.Health(); len(hs) != 0 {
				t.Fatalf("Health after the fix = %+v", hs)
			}
		})
	}
}

func refusedLogLine(t *testing.T, logs string) string {
	t.Helper()
	var found []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "list=jp-ipv4") && strings.Contains(l, "level=ERROR") {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one error line for jp-ipv4, got %d:\n%s", len(found), logs)
	}
	return found[0]
}

// TestLocalListNoGoodCopy: a first start with an empty IPv4 file and a good
// IPv6 file says the IPv4 list cannot be enforced (Unenforceable, Health
// with NoGoodCopy, an error line), and the IPv6 list is in effect.
func TestLocalListNoGoodCopy(t *testing.T) {
	dir, _, _, jp4, jp6 := localJP(t)
	writeFile(t, filepath.Join(dir, "jp-ipv4.txt"), "")
	var logs bytes.Buffer
	g, err := Open(localOptions(dir, t.TempDir()), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if g.Allowed(jp4) || !g.Allowed(jp6) {
		t.Fatalf("allowed v4 %v v6 %v, want false true", g.Allowed(jp4), g.Allowed(jp6))
	}
	if got := g.Unenforceable(); !slices.Equal(got, []string{"jp-ipv4"}) {
		t.Fatalf("Unenforceable = %v", got)
	}
	hs := g.Health()
	if len(hs) != 1 || !hs[0].NoGoodCopy || hs[0].Check != CheckFloor || !strings.Contains(hs[0].String(), "no good copy") {
		t.Fatalf("Health = %+v", hs)
	}
	if line := refusedLogLine(t, logs.String()); !strings.Contains(line, "no good copy") || !strings.Contains(line, "geo.min_entries") {
		t.Errorf("log line %q", line)
	}
	if n := refusedCount(t, g, "jp-ipv4", CheckFloor); n != 1 {
		t.Errorf("refused_total = %v", n)
	}
	m := gatherMetrics(t, g)
	for key, want := range map[string]float64{
		"sipsentry_geo_list_degraded,list=jp-ipv4":      1,
		"sipsentry_geo_list_unenforceable,list=jp-ipv4": 1,
		"sipsentry_geo_list_degraded,list=jp-ipv6":      0,
		"sipsentry_geo_list_unenforceable,list=jp-ipv6": 0,
	} {
		if v, ok := m[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

// TestMinEntriesCountsLines: geo.min_entries counts CIDR lines as written
// (the README says so): 61 adjacent /16 lines are 61, though they merge
// into a few prefixes; 49 lines are under the floor of 50.
func TestMinEntriesCountsLines(t *testing.T) {
	adjacent := make([]netip.Prefix, 61)
	for i := range adjacent {
		adjacent[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16)
	}
	if n := len(Normalize(adjacent)); n >= 50 {
		t.Fatalf("test premise: 61 adjacent /16s merge into %d prefixes", n)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "jp-ipv4.txt"), prefixLines(adjacent))
	writeFile(t, filepath.Join(dir, "jp-ipv6.txt"), prefixLines(spread(t, 49, true)))
	g, err := Open(localOptions(dir, t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !g.Allowed(netip.MustParseAddr("10.60.255.255")) {
		t.Fatal("61 CIDR lines refused by geo.min_entries = 50")
	}
	hs := g.Health()
	if len(hs) != 1 || hs[0].List != "jp-ipv6" || hs[0].Check != CheckFloor || !strings.Contains(hs[0].Reason, "only 49 CIDR lines") {
		t.Fatalf("Health = %+v, want jp-ipv6 under the floor with 49 lines", hs)
	}
	rs, _ := g.Update(context.Background(), false)
	if r := resultFor(t, rs, "jp-ipv4"); r.Lines != 61 || r.After >= 50 {
		t.Errorf("jp-ipv4 = %+v, want 61 lines merged into fewer entries", r)
	}
}

// spread returns n non-adjacent prefixes (10.2i.0.0/16 or 2001:db8:2i::/48),
// offset by base.
func spread(t *testing.T, n int, v6 bool) []netip.Prefix {
	return spreadFrom(n, v6, 0)
}

func spreadFrom(n int, v6 bool, base int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		j := 2 * (base + i)
		if v6 {
			out[i] = netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(j >> 8), byte(j)}), 48)
		} else {
			out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(10 + j/256), byte(j), 0, 0}), 16)
		}
	}
	return out
}

// TestChurnGuardRefusesSameSizeDownload: a download of the same size as the
// last good list with 98 % different prefixes passes the floor and the
// shrink guard but is refused by the churn guard; 2 % different passes.
func TestChurnGuardRefusesSameSizeDownload(t *testing.T) {
	good := spreadFrom(100, false, 0)
	// 2 of the old prefixes kept, 98 moved elsewhere: same size.
	churned := append(append([]netip.Prefix{}, good[:2]...), spreadFrom(98, false, 300)...)
	// 2 moved: a normal day.
	normal := append(append([]netip.Prefix{}, good[2:]...), spreadFrom(2, false, 300)...)
	v6 := spread(t, 60, true)
	serve := func(v4 []netip.Prefix) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/ipv6.txt") {
				w.Write(listBody(v6))
				return
			}
			w.Write(listBody(v4))
		}
	}
	srv := newListServer(t)
	srv.set(serve(good))
	state := t.TempDir()
	g := remoteGeo(t, srv, state, nil)
	if _, err := g.Update(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	inGood := good[50].Addr().Next()

	srv.set(serve(churned))
	rs, err := g.Update(context.Background(), false)
	if !errors.Is(err, ErrListsKept) {
		t.Fatalf("Update = %v, want ErrListsKept", err)
	}
	r := resultFor(t, rs, "jp-ipv4")
	if r.Decision != DecisionRejected || r.Check != CheckChurn || !strings.Contains(r.Reason, "98%") || !strings.Contains(r.Reason, "geo.max_churn") {
		t.Fatalf("churned download = %+v, want rejected by the churn guard at 98%%", r)
	}
	if !g.Allowed(inGood) || g.Allowed(churned[50].Addr()) {
		t.Fatal("the churned list reached the live set")
	}
	if hs := g.Health(); len(hs) != 1 || hs[0].Check != CheckChurn {
		t.Fatalf("Health = %+v", hs)
	}
	// And the restart keeps the good copy.
	if g2 := remoteGeo(t, srv, state, nil); !g2.Allowed(inGood) || g2.Allowed(churned[50].Addr()) {
		t.Fatal("the stored copy is not the last good list")
	}

	srv.set(serve(normal))
	rs, err = g.Update(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if r := resultFor(t, rs, "jp-ipv4"); r.Decision != DecisionUpdated || r.Added != 2 || r.Removed != 2 {
		t.Fatalf("normal churn = %+v", r)
	}
	if len(g.Health()) != 0 {
		t.Fatalf("Health after a good list = %+v", g.Health())
	}
}

// TestGuardMeasures checks the shrink and churn figures themselves.
func TestGuardMeasures(t *testing.T) {
	g := &Geo{opts: Options{MaxShrink: 0.2, MaxChurn: 0.25}}
	mk := func(ps ...string) *listState {
		var out []netip.Prefix
		for _, p := range ps {
			out = append(out, netip.MustParsePrefix(p))
		}
		return newListState(Normalize(out), listMeta{})
	}
	prev := mk("198.51.100.0/24", "203.0.113.0/24") // 512 addresses
	for _, tc := range []struct {
		name  string
		cand  *listState
		check string
	}{
		{"same", mk("198.51.100.0/24", "203.0.113.0/24"), ""},
		{"lost 25%", mk("198.51.100.0/24", "203.0.113.0/25"), CheckShrink},
		{"lost 12.5%", mk("198.51.100.0/24", "203.0.113.0/25", "203.0.113.128/26"), ""},
		{"half replaced", mk("198.51.100.0/24", "192.0.2.0/24"), CheckChurn}, // churn 0.5
		{"grew to 5x", mk("198.51.100.0/24", "203.0.113.0/24", "10.0.0.0/23", "10.0.4.0/23"), CheckChurn},
		{"other family", mk("2001:db8::/32"), CheckChurn}, // nothing of prev's left, 2^96 new
	} {
		ref := g.guard(prev, tc.cand, 100)
		got := ""
		if ref != nil {
			got = ref.check
		}
		if got != tc.check {
			t.Errorf("%s: check %q (%v), want %q", tc.name, got, ref, tc.check)
		}
	}
}

// TestListsAccept: a local file the admin really means to shrink is
// refused by the reload, taken by Accept (what `lists accept` runs), and a
// running daemon's Geo on the same state dir takes it at its next reload;
// a restart keeps it.
func TestListsAccept(t *testing.T) {
	dir, v4, _, jp4, _ := localJP(t)
	state := t.TempDir()
	daemon, err := Open(localOptions(dir, state), quiet())
	if err != nil {
		t.Fatal(err)
	}
	small := v4[:10]
	dropped := v4[len(v4)-1].Addr()
	path := filepath.Join(dir, "jp-ipv4.txt")
	writeFile(t, path, prefixLines(small))
	if _, err := daemon.Update(context.Background(), false); !errors.Is(err, ErrListsKept) || !daemon.Allowed(dropped) {
		t.Fatalf("the 10-line list was not refused: %v", err)
	}

	var logs bytes.Buffer
	cli, err := Open(localOptions(dir, state), slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := cli.Accept(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.After != len(small) || r.Before != len(v4) || r.Lines != 10 {
		t.Errorf("Accept = %+v", r)
	}
	if cli.Allowed(dropped) || !cli.Allowed(small[0].Addr()) || len(cli.Health()) != 0 {
		t.Fatalf("Accept did not take the list: health %+v", cli.Health())
	}
	if !strings.Contains(logs.String(), "accepted by the admin") || !strings.Contains(logs.String(), path) {
		t.Errorf("Accept logged %q", logs.String())
	}

	if _, err := daemon.Update(context.Background(), false); err != nil {
		t.Fatalf("daemon reload after accept: %v", err)
	}
	if daemon.Allowed(dropped) || !daemon.Allowed(small[0].Addr()) || len(daemon.Health()) != 0 {
		t.Fatalf("the daemon did not take the accepted list: health %+v", daemon.Health())
	}
	g3, err := Open(localOptions(dir, state), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if g3.Allowed(dropped) || !g3.Allowed(small[0].Addr()) || len(g3.Health()) != 0 {
		t.Fatal("the accepted list did not survive a restart")
	}
	_ = jp4

	// Accept still refuses what is not a list.
	writeFile(t, path, "<html>oops</html>\n")
	if _, err := cli.Accept(path); err == nil || !strings.Contains(err.Error(), "html") {
		t.Errorf("Accept of an HTML page: %v", err)
	}
	if _, err := cli.Accept(filepath.Join(dir, "japan.txt")); err == nil || !strings.Contains(err.Error(), "jp-ipv4.txt") {
		t.Errorf("Accept of a badly named file: %v", err)
	}
}

// TestStoredCopyChangedOnDisk: a stored last good copy truncated on disk
// is not a good copy (its line count no longer matches); without lists_dir
// the list then has none.
func TestStoredCopyChangedOnDisk(t *testing.T) {
	v4, v6 := jpLists(t)
	srv := newListServer(t)
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ipv6.txt") {
			w.Write(listBody(v6))
			return
		}
		w.Write(listBody(v4))
	})
	state := t.TempDir()
	g := remoteGeo(t, srv, state, nil)
	if got := g.Unenforceable(); !slices.Equal(got, []string{"jp-ipv4", "jp-ipv6"}) {
		t.Fatalf("nothing downloaded yet: Unenforceable = %v", got)
	}
	if _, err := g.Update(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if len(g.Health()) != 0 {
		t.Fatalf("Health after the first download = %+v", g.Health())
	}
	cached := filepath.Join(state, "lists", "jp-ipv4.txt")
	b, err := os.ReadFile(cached)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, cached, string(b[:len(b)/2-len(b)/2%20])) // cut mid-way (whole lines or not)
	g2 := remoteGeo(t, srv, state, nil)
	if got := g2.Unenforceable(); !slices.Equal(got, []string{"jp-ipv4"}) {
		t.Fatalf("Unenforceable = %v, want the truncated jp-ipv4", got)
	}
	if hs := g2.Health(); len(hs) != 1 || hs[0].Check != CheckCache || !strings.Contains(hs[0].Reason, cached) {
		t.Errorf("Health = %+v, want the stored copy named as unusable", hs)
	}
}

// gatherMetrics flattens g's metrics into name,label=value keys.
func gatherMetrics(t *testing.T, g *Geo) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(g)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return got
}

// TestReadersWriteNothing: without StoreLastGood (doctor, lookup, sources)
// the lists are checked against the stored copies, but nothing is written.
func TestReadersWriteNothing(t *testing.T) {
	dir, _, _, jp4, _ := localJP(t)
	state := t.TempDir()
	o := localOptions(dir, state)
	o.StoreLastGood = false
	g, err := Open(o, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !g.Allowed(jp4) {
		t.Fatal("the local list is not in effect")
	}
	if _, err := g.Update(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(state); len(ents) != 0 {
		t.Fatalf("a reader wrote %v into the state dir", ents)
	}
	if _, err := g.Accept(filepath.Join(dir, "jp-ipv4.txt")); err == nil {
		t.Fatal("a reader accepted a list")
	}
}

// BenchmarkGuardUS is what the floor, shrink and churn checks add to one
// list update, against parsing and normalising the same list (the largest
// shipped IPv4 list, US) in the same run: the candidate differs from the
// last good list by 2 % of its prefixes.
func BenchmarkGuardUS(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(testdata(b), "us-ipv4-aggregated.txt"))
	if err != nil {
		b.Fatal(err)
	}
	k := listKey{"US", false}
	ps, lines, ref := parseCandidate(k, body)
	if ref != nil {
		b.Fatal(ref)
	}
	prev := newListState(ps, listMeta{})
	cand := newListState(ps[len(ps)/50:], listMeta{})
	g := &Geo{opts: testOptions()}
	b.Run("parse+normalise", func(b *testing.B) {
		for b.Loop() {
			if _, _, ref := parseCandidate(k, body); ref != nil {
				b.Fatal(ref)
			}
		}
	})
	b.Run("guard", func(b *testing.B) {
		for b.Loop() {
			if ref := g.guard(prev, cand, lines); ref != nil {
				b.Fatal(ref)
			}
		}
	})
}
