package geo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/config"
)

// listServer serves /<cc>/ipv4.txt and /<cc>/ipv6.txt; handler decides.
type listServer struct {
	*httptest.Server
	mu      sync.Mutex
	handler func(w http.ResponseWriter, r *http.Request)
	reqs    []*http.Request
}

func newListServer(t *testing.T) *listServer {
	s := &listServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		h := s.handler
		s.reqs = append(s.reqs, r.Clone(context.Background()))
		s.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *listServer) set(h func(w http.ResponseWriter, r *http.Request)) {
	s.mu.Lock()
	s.handler = h
	s.mu.Unlock()
}

func (s *listServer) last(path string) *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.reqs) - 1; i >= 0; i-- {
		if s.reqs[i].URL.Path == path {
			return s.reqs[i]
		}
	}
	return nil
}

func listBody(ps []netip.Prefix) []byte {
	var b bytes.Buffer
	b.WriteString("# test list\n")
	for _, p := range ps {
		fmt.Fprintln(&b, p)
	}
	return b.Bytes()
}

// jpLists are the shipped JP lists as served bodies.
func jpLists(t *testing.T) (v4, v6 []netip.Prefix) {
	return Normalize(readShipped(t, "jp", false)), Normalize(readShipped(t, "jp", true))
}

func remoteGeo(t *testing.T, srv *listServer, stateDir string, mod func(*Options)) *Geo {
	t.Helper()
	cfg := testOptions()
	cfg.AllowCountries = []string{"JP"}
	cfg.ListURLv4 = srv.URL + "/{cc}/ipv4.txt"
	cfg.ListURLv6 = srv.URL + "/{cc}/ipv6.txt"
	// Generous: the build machine is shared and slow under -race; only the
	// timeout case shortens it.
	cfg.DownloadTimeout = (60 * time.Second)
	if mod != nil {
		mod(&cfg)
	}
	g, err := Open(cfg.at(stateDir), quiet())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func resultFor(t *testing.T, rs []ListResult, list string) ListResult {
	t.Helper()
	for _, r := range rs {
		if r.List == list {
			return r
		}
	}
	t.Fatalf("no result for %s in %+v", list, rs)
	return ListResult{}
}

func counter(t *testing.T, g *Geo, list, result string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(g)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sipsentry_geo_list_updates_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["list"] == list && l["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestUpdateKeepsLastGoodList(t *testing.T) {
	v4, v6 := jpLists(t)
	jpAddr := v4[len(v4)/2].Addr().Next()
	jp6Addr := v6[len(v6)/2].Addr().Next()
	outside := mustAddr(t, "198.51.100.1")
	srv := newListServer(t)
	serveGood := func(etag string, v4 []netip.Prefix) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", etag)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if strings.HasSuffix(r.URL.Path, "/ipv6.txt") {
				w.Write(listBody(v6))
				return
			}
			w.Write(listBody(v4))
		}
	}
	srv.set(serveGood(`"v1"`, v4))
	state := t.TempDir()
	g := remoteGeo(t, srv, state, nil)
	if g.Allowed(jpAddr) {
		t.Fatal("allowed before any list was loaded")
	}

	rs, err := g.Update(context.Background(), false)
	if err != nil {
		t.Fatalf("first update: %v", err)
	}
	if r := resultFor(t, rs, "jp-ipv4"); r.Decision != DecisionUpdated || r.Before != 0 || r.After != len(v4) || r.Added != len(v4) {
		t.Fatalf("first update jp-ipv4 = %+v", r)
	}
	if srv.last("/jp/ipv4.txt") == nil {
		t.Fatal("lower-case {cc} not used in the URL")
	}
	if !g.Allowed(jpAddr) || !g.Allowed(jp6Addr) || g.Allowed(outside) {
		t.Fatal("lists not in effect after the first update")
	}
	if n := len(g.AllowedPrefixes()); n != len(v4)+len(v6) {
		t.Fatalf("AllowedPrefixes has %d, want %d", n, len(v4)+len(v6))
	}
	for _, f := range []string{"jp-ipv4.txt", "jp-ipv4.meta.json", "jp-ipv6.txt", "jp-ipv6.meta.json"} {
		if _, err := os.Stat(filepath.Join(state, "lists", f)); err != nil {
			t.Errorf("cache: %v", err)
		}
	}

	// 304: the ETag is sent back and nothing changes.
	rs, err = g.Update(context.Background(), false)
	if err != nil {
		t.Fatalf("304 update: %v", err)
	}
	if r := resultFor(t, rs, "jp-ipv4"); r.Decision != DecisionNotModified || r.After != len(v4) {
		t.Fatalf("304 update = %+v", r)
	}
	if got := srv.last("/jp/ipv4.txt").Header.Get("If-None-Match"); got != `"v1"` {
		t.Fatalf("If-None-Match = %q", got)
	}

	liveIsIntact := func(t *testing.T) {
		t.Helper()
		if !g.Allowed(jpAddr) || !g.Allowed(jp6Addr) || g.Allowed(outside) {
			t.Fatal("the live index changed")
		}
		if v := g.Lookup(jpAddr); v.ListCountry != "JP" || !v.InAllowed {
			t.Fatalf("Lookup after a refused update: %+v", v)
		}
		if n := len(g.AllowedPrefixes()); n != len(v4)+len(v6) {
			t.Fatalf("AllowedPrefixes has %d, want %d", n, len(v4)+len(v6))
		}
		// And the cache on disk still holds the good list for the next start.
		g2 := remoteGeo(t, srv, state, nil)
		if !g2.Allowed(jpAddr) || len(g2.AllowedPrefixes()) != len(v4)+len(v6) {
			t.Fatal("the cached list changed")
		}
	}

	half := v4[:len(v4)/2]
	for _, tc := range []struct {
		name     string
		handler  func(w http.ResponseWriter, r *http.Request)
		decision Decision
		reason   string
	}{
		{"500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream broke", http.StatusInternalServerError)
		}, DecisionFailed, "HTTP 500"},
		{"timeout", func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // hang until the client gives up
		}, DecisionFailed, "timed out"},
		{"truncated body", func(w http.ResponseWriter, r *http.Request) {
			body := listBody(v4)
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			w.Write(body[:len(body)/2]) // the server closes the connection short
		}, DecisionFailed, "interrupted"},
		{"html page", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><body>Too many requests</body></html>"))
		}, DecisionRejected, "HTML"},
		{"html page sent as text/plain", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte("<!DOCTYPE html>\n<html><body>captive portal</body></html>"))
		}, DecisionRejected, "HTML"},
		{"shrunk by half", func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/ipv6.txt") {
				w.Write(listBody(v6))
				return
			}
			w.Write(listBody(half))
		}, DecisionRejected, "shrank"},
		{"under the floor", func(w http.ResponseWriter, r *http.Request) {
			w.Write(listBody(v4[:10]))
		}, DecisionRejected, "geo.min_entries"},
		{"empty 200", func(w http.ResponseWriter, r *http.Request) {}, DecisionRejected, "geo.min_entries"},
		{"wrong family", func(w http.ResponseWriter, r *http.Request) {
			w.Write(listBody(v6)) // IPv6 served for both
		}, DecisionRejected, "not an IPv4 CIDR"},
		{"one bad line", func(w http.ResponseWriter, r *http.Request) {
			b := listBody(v4)
			w.Write(append(b, "203.0.113.0/33\n"...))
		}, DecisionRejected, "line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv.set(tc.handler)
			if tc.name == "timeout" {
				saved := g.opts.DownloadTimeout
				g.opts.DownloadTimeout = (300 * time.Millisecond)
				defer func() { g.opts.DownloadTimeout = saved }()
			}
			before := counter(t, g, "jp-ipv4", string(tc.decision))
			rs, err := g.Update(context.Background(), false)
			if !errors.Is(err, ErrListsKept) {
				t.Fatalf("Update error = %v, want ErrListsKept", err)
			}
			r := resultFor(t, rs, "jp-ipv4")
			if r.Decision != tc.decision || !r.Kept() || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("jp-ipv4 = %+v, want %s mentioning %q", r, tc.decision, tc.reason)
			}
			if r.Before != len(v4) || r.After != len(v4) {
				t.Fatalf("entries %d → %d, want the old %d kept", r.Before, r.After, len(v4))
			}
			if !strings.Contains(err.Error(), "jp-ipv4") {
				t.Errorf("error %q does not name the list", err)
			}
			if after := counter(t, g, "jp-ipv4", string(tc.decision)); after != before+1 {
				t.Errorf("updates_total{result=%s} went %v → %v", tc.decision, before, after)
			}
			liveIsIntact(t)
		})
	}

	// Dry run of a real change: reported, not applied.
	grown := Normalize(append(append([]netip.Prefix{}, v4...), netip.MustParsePrefix("198.51.100.0/24")))
	srv.set(serveGood(`"v2"`, grown))
	rs, err = g.Update(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if r := resultFor(t, rs, "jp-ipv4"); r.Decision != DecisionUpdated || !r.DryRun || r.Added != 1 || r.Removed != 0 || r.After != len(v4)+1 {
		t.Fatalf("dry run = %+v", r)
	}
	liveIsIntact(t)

	rs, err = g.Update(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if r := resultFor(t, rs, "jp-ipv4"); r.Decision != DecisionUpdated || r.Added != 1 || r.After != len(v4)+1 {
		t.Fatalf("real update = %+v", r)
	}
	if r := resultFor(t, rs, "jp-ipv6"); r.Decision != DecisionUnchanged {
		t.Fatalf("jp-ipv6 = %+v, want unchanged (new ETag, same prefixes)", r)
	}
	if !g.Allowed(outside) {
		t.Fatal("the accepted new list is not in effect")
	}
	if age, ok := g.ListAges()["jp-ipv4"]; !ok || age < 0 || age > time.Hour {
		t.Errorf("ListAges = %v", g.ListAges())
	}
}

func TestUpdateSizeCap(t *testing.T) {
	v4, v6 := jpLists(t)
	srv := newListServer(t)
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ipv6.txt") {
			w.Write(listBody(v6))
			return
		}
		w.Write(listBody(v4))
	})
	g := remoteGeo(t, srv, t.TempDir(), func(c *Options) { c.MaxDownloadBytes = 4096 })
	rs, err := g.Update(context.Background(), false)
	if !errors.Is(err, ErrListsKept) {
		t.Fatalf("err = %v", err)
	}
	r := resultFor(t, rs, "jp-ipv4")
	if r.Decision != DecisionRejected || !strings.Contains(r.Reason, "geo.max_download_bytes") {
		t.Fatalf("oversize = %+v", r)
	}
	if g.Allowed(v4[0].Addr()) {
		t.Fatal("an oversize list was used")
	}
}

func TestListsDir(t *testing.T) {
	dir := t.TempDir()
	geotest.WriteLists(t, dir, map[string][]string{
		"JP": {"198.51.100.0/25", "198.51.100.128/25", "2001:db8:1::/48"},
		"de": {"203.0.113.0/24"},
	})
	mmdb := filepath.Join(t.TempDir(), "c.mmdb")
	geotest.WriteMMDB(t, mmdb, map[string]string{
		"198.51.100.0/25": "JP", "198.51.100.128/25": "US", "203.0.113.0/24": "DE", "2001:db8::/32": "JP",
	}, true)
	cfg := handMade(testOptions())
	cfg.AllowCountries = []string{"JP"}
	cfg.ListsDir = dir
	cfg.MMDB = mmdb
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ip   string
		want Verdict
	}{
		{"198.51.100.1", Verdict{MMDBCountry: "JP", ListCountry: "JP", InAllowed: true}},
		{"198.51.100.200", Verdict{MMDBCountry: "US", ListCountry: "JP", InAllowed: true, Disagree: true}},
		{"203.0.113.5", Verdict{MMDBCountry: "DE", ListCountry: "DE"}},
		{"2001:db8:1::9", Verdict{MMDBCountry: "JP", ListCountry: "JP", InAllowed: true}},
		// The DB says JP, JP's list is loaded but does not hold it: disagreement.
		{"2001:db8:2::9", Verdict{MMDBCountry: "JP", Disagree: true}},
		{"198.18.0.1", Verdict{}},
	} {
		tc.want.IP = mustAddr(t, tc.ip)
		if got := g.Lookup(mustAddr(t, tc.ip)); got != tc.want {
			t.Errorf("Lookup(%s) = %+v, want %+v", tc.ip, got, tc.want)
		}
	}
	if got := fmt.Sprint(g.AllowedPrefixes()); got != "[198.51.100.0/24 2001:db8:1::/48]" {
		t.Errorf("AllowedPrefixes = %s", got)
	}

	// A broken edit keeps the last good list; a good one is picked up.
	os.WriteFile(filepath.Join(dir, "jp-ipv4.txt"), []byte("198.51.100.0/24\nnot a cidr\n"), 0o644)
	rs, err := g.Update(context.Background(), false)
	if !errors.Is(err, ErrListsKept) || resultFor(t, rs, "jp-ipv4").Decision != DecisionRejected {
		t.Fatalf("broken local file: %v %+v", err, rs)
	}
	if !g.Allowed(mustAddr(t, "198.51.100.200")) {
		t.Fatal("broken local file replaced the good list")
	}
	os.WriteFile(filepath.Join(dir, "jp-ipv4.txt"), []byte("198.51.100.0/25\n"), 0o644)
	rs, err = g.Update(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if r := resultFor(t, rs, "jp-ipv4"); r.Decision != DecisionUpdated || r.Removed != 1 || r.Added != 1 {
		t.Fatalf("local update = %+v", r)
	}
	if g.Allowed(mustAddr(t, "198.51.100.200")) {
		t.Fatal("the new local list is not in effect")
	}
}

func TestListsDirShippedNames(t *testing.T) {
	td := testdata(t)
	cfg := testOptions()
	cfg.AllowCountries = []string{"JP"}
	cfg.ListsDir = td
	cfg.MMDB = filepath.Join(td, "dbip-country.mmdb")
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(g.Lists()); got != 2*len(shippedCountries) {
		t.Fatalf("%d lists loaded from the ipverse names, want %d", got, 2*len(shippedCountries))
	}
	v := g.Lookup(mustAddr(t, "133.242.0.1"))
	if v.MMDBCountry != "JP" || v.ListCountry != "JP" || !v.InAllowed || v.Disagree {
		t.Errorf("133.242.0.1 = %+v", v)
	}
	v = g.Lookup(mustAddr(t, "8.8.8.8"))
	if v.MMDBCountry != "US" || v.ListCountry != "US" || v.InAllowed {
		t.Errorf("8.8.8.8 = %+v", v)
	}
	// The zero Addr (a caller's parse failure) is nobody's, and no panic.
	if v := g.Lookup(netip.Addr{}); v.InAllowed || v.ListCountry != "" || v.MMDBCountry != "" || g.Allowed(netip.Addr{}) {
		t.Errorf("zero Addr = %+v", v)
	}
}

// TestRunRefreshesMissingLists starts Run with no cached lists; it must
// fetch them without waiting a whole refresh period.
func TestRunRefreshesMissingLists(t *testing.T) {
	v4, v6 := jpLists(t)
	srv := newListServer(t)
	got := make(chan struct{}, 4)
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ipv6.txt") {
			w.Write(listBody(v6))
		} else {
			w.Write(listBody(v4))
		}
		select {
		case got <- struct{}{}:
		default:
		}
	})
	g := remoteGeo(t, srv, t.TempDir(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	deadline := time.After(60 * time.Second)
	for !g.Allowed(v4[0].Addr()) {
		select {
		case <-got:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("Run did not fetch the missing lists")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

func TestConfigBadInputNamesSetting(t *testing.T) {
	for _, tc := range []struct{ toml, key string }{
		{"[geo]\nallow_countries = [\"JP\", \"XX\"]\n", "geo.allow_countries"},
		{"[geo]\nallow_countries = [\"JP\"]\nlist_url_v4 = \"https://example.net/jp.txt\"\n", "geo.list_url_v4"},
		{"[geo]\nallow_countries = [\"JP\"]\nlist_url_v6 = \"https://example.net/v6.txt\"\n", "geo.list_url_v6"},
	} {
		_, err := config.Parse("test.toml", []byte(tc.toml))
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("config %q: error %v does not name %s", tc.toml, err, tc.key)
		}
	}
	// Open checks too, for callers that build the struct themselves.
	cfg := testOptions()
	cfg.AllowCountries = []string{"JP"}
	cfg.ListURLv4 = "https://example.net/list.txt"
	if _, err := Open(cfg.at(t.TempDir()), quiet()); err == nil || !strings.Contains(err.Error(), "geo.list_url_v4") {
		t.Errorf("Open with a {cc}-less template: %v", err)
	}
	cfg = testOptions()
	cfg.AllowCountries = []string{"J1"}
	if _, err := Open(cfg.at(t.TempDir()), quiet()); err == nil || !strings.Contains(err.Error(), "geo.allow_countries") {
		t.Errorf("Open with a bad country code: %v", err)
	}
}

// TestLookupsDuringUpdates runs lookups while updates swap the index
// (for the race detector) and checks a corrupt cache metadata file does not
// lose the cached list.
func TestLookupsDuringUpdates(t *testing.T) {
	v4, v6 := jpLists(t)
	srv := newListServer(t)
	var n atomic.Int64
	srv.set(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", fmt.Sprintf(`"%d"`, n.Add(1))) // always new: always a full swap
		if strings.HasSuffix(r.URL.Path, "/ipv6.txt") {
			w.Write(listBody(v6))
			return
		}
		w.Write(listBody(v4))
	})
	state := t.TempDir()
	g := remoteGeo(t, srv, state, nil)
	if _, err := g.Update(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	a := v4[0].Addr()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var misses atomic.Int64
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !g.Allowed(a) || g.Lookup(a).ListCountry != "JP" || len(g.AllowedPrefixes()) == 0 {
					misses.Add(1)
				}
				g.Lists()
				g.ListAges()
			}
		}()
	}
	for i := 0; i < 5; i++ {
		if _, err := g.Update(context.Background(), false); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	if m := misses.Load(); m != 0 {
		t.Fatalf("%d lookups saw no list during swaps", m)
	}

	os.WriteFile(filepath.Join(state, "lists", "jp-ipv4.meta.json"), []byte("{broken"), 0o644)
	g2 := remoteGeo(t, srv, state, nil)
	if !g2.Allowed(a) {
		t.Fatal("a corrupt metadata file dropped the cached list")
	}
}

func TestUpdateCancelled(t *testing.T) {
	srv := newListServer(t)
	srv.set(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 500) })
	g := remoteGeo(t, srv, t.TempDir(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := g.Update(ctx, false)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestMetricsExported(t *testing.T) {
	dir := t.TempDir()
	geotest.WriteLists(t, dir, map[string][]string{"JP": {"198.51.100.0/24", "2001:db8::/32"}})
	cfg := handMade(testOptions())
	cfg.AllowCountries = []string{"JP"}
	cfg.ListsDir = dir
	cfg.MMDB = filepath.Join(dir, "missing.mmdb")
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Update(context.Background(), false); err != nil {
		t.Fatal(err)
	}
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
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[key] = v
		}
	}
	for key, want := range map[string]float64{
		"sipsentry_geo_list_entries,list=jp-ipv4":                        1,
		"sipsentry_geo_list_entries,list=jp-ipv6":                        1,
		"sipsentry_geo_list_updates_total,list=jp-ipv4,result=unchanged": 1,
		"sipsentry_geo_mmdb_loaded,setting=geo.mmdb":                     0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v; all: %v", key, v, ok, want, got)
		}
	}
	if age, ok := got["sipsentry_geo_list_age_seconds,list=jp-ipv4"]; !ok || age < 0 {
		t.Errorf("list age metric = %v, %v", age, ok)
	}
}

func TestDisagreeNeedsSameFamilyList(t *testing.T) {
	dir := t.TempDir()
	geotest.WriteLists(t, dir, map[string][]string{"JP": {"198.51.100.0/24"}}) // no JP IPv6 list
	mmdb := filepath.Join(t.TempDir(), "c.mmdb")
	geotest.WriteMMDB(t, mmdb, map[string]string{"203.0.113.0/24": "JP", "2001:db8::/32": "JP"}, true)
	cfg := handMade(testOptions())
	cfg.AllowCountries, cfg.ListsDir, cfg.MMDB = []string{"JP"}, dir, mmdb
	g, err := Open(cfg.at(t.TempDir()), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if v := g.Lookup(mustAddr(t, "203.0.113.1")); !v.Disagree {
		t.Errorf("JP by the DB, outside the loaded JP IPv4 list: %+v, want disagree", v)
	}
	if v := g.Lookup(mustAddr(t, "2001:db8::1")); v.Disagree {
		t.Errorf("JP by the DB, no JP IPv6 list loaded: %+v, want no disagreement", v)
	}
}
