package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// listsFixture serves the shipped JP lists (ETag "v1") until broken is set,
// then an HTML error page.
type listsFixture struct {
	srv    *httptest.Server
	broken atomic.Bool
	config string
	state  string
}

func newListsFixture(t *testing.T) *listsFixture {
	td := geoTestdata(t)
	f := &listsFixture{state: t.TempDir()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.broken.Load() {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>429 Too Many Requests</html>"))
			return
		}
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		m := regexp.MustCompile(`^/country/([a-z]{2})/(ipv[46])-aggregated\.txt$`).FindStringSubmatch(r.URL.Path)
		if m == nil {
			http.NotFound(w, r)
			return
		}
		b, err := os.ReadFile(filepath.Join(td, m[1]+"-"+m[2]+"-aggregated.txt"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", `"v1"`)
		w.Write(b)
	}))
	t.Cleanup(f.srv.Close)
	f.config = filepath.Join(t.TempDir(), "sipsentry.toml")
	os.WriteFile(f.config, []byte(`state_dir = "`+f.state+`"
[geo]
allow_countries = ["JP"]
list_url_v4 = "`+f.srv.URL+`/country/{cc}/ipv4-aggregated.txt"
list_url_v6 = "`+f.srv.URL+`/country/{cc}/ipv6-aggregated.txt"
`), 0o644)
	return f
}

func rowFields(t *testing.T, out, list string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == list {
			return f
		}
	}
	t.Fatalf("no row for %s in:\n%s", list, out)
	return nil
}

func TestListsUpdate(t *testing.T) {
	f := newListsFixture(t)
	jp4, jp6 := shippedLines(t, "jp-ipv4"), shippedLines(t, "jp-ipv6")

	// Dry run: reported, nothing written.
	out, err := geoCmd(t, "-c", f.config, "lists", "update", "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if got := strings.Join(rowFields(t, out, "jp-ipv4")[1:], " "); !strings.HasPrefix(got, "0 → "+jp4+" +"+jp4+" -0 would update") {
		t.Errorf("dry-run jp-ipv4 row: %q", got)
	}
	if _, err := os.Stat(filepath.Join(f.state, "lists")); !os.IsNotExist(err) {
		t.Errorf("dry run wrote the cache: %v", err)
	}

	out, err = geoCmd(t, "-c", f.config, "lists", "update")
	if err != nil {
		t.Fatalf("update: %v\n%s", err, out)
	}
	if got := strings.Join(rowFields(t, out, "jp-ipv6")[1:], " "); got != "0 → "+jp6+" +"+jp6+" -0 updated -" {
		t.Errorf("jp-ipv6 row: %q", got)
	}

	out, err = geoCmd(t, "-c", f.config, "lists", "update", "--json")
	if err != nil {
		t.Fatalf("second update: %v\n%s", err, out)
	}
	var rs []map[string]any
	if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 2 {
		t.Fatalf("JSON: %v\n%s", err, out)
	}
	for _, r := range rs {
		if r["decision"] != "not-modified" {
			t.Errorf("second update %v, want not-modified (ETag sent back)", r)
		}
	}

	// The source breaks: exit status 1 (not a usage error), old list kept.
	f.broken.Store(true)
	out, err = geoCmd(t, "-c", f.config, "lists", "update")
	if err == nil || isUsage(err) {
		t.Fatalf("broken source: err = %v, want a failure (exit 1)\n%s", err, out)
	}
	if !strings.Contains(err.Error(), "2 of 2 lists not updated") {
		t.Errorf("error %q", err)
	}
	if got := strings.Join(rowFields(t, out, "jp-ipv4")[1:4], " "); got != jp4+" → "+jp4 {
		t.Errorf("entries after a rejected update: %q", got)
	}
	if !strings.Contains(out, "rejected, kept last good") || !strings.Contains(out, "HTML") {
		t.Errorf("no rejection reason:\n%s", out)
	}
	out, err = geoCmd(t, "-c", f.config, "lists", "show")
	if err != nil {
		t.Fatal(err)
	}
	if got := rowFields(t, out, "jp-ipv4"); got[1] != "yes" || got[2] != jp4 {
		t.Errorf("lists show after the rejection: %q", got)
	}
	// And lookups still use it.
	out, err = geoCmd(t, "-c", f.config, "lookup", "133.242.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(strings.Split(out, "\n")[1]); got[2] != "JP" || got[3] != "yes" {
		t.Errorf("lookup after the rejection: %q", got)
	}
}

func TestListsUpdateNoCountries(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sipsentry.toml")
	os.WriteFile(cfg, []byte("state_dir = \""+t.TempDir()+"\"\n"), 0o644)
	_, err := geoCmd(t, "-c", cfg, "lists", "update")
	if err == nil || !isUsage(err) || !strings.Contains(err.Error(), "geo.allow_countries") {
		t.Fatalf("err = %v, want a usage error naming geo.allow_countries", err)
	}
}

// shippedLines counts the CIDR lines of a shipped list, as a string.
func shippedLines(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(geoTestdata(t), name+"-aggregated.txt"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			n++
		}
	}
	return strconv.Itoa(n)
}
