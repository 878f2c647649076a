package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/state"
)

// After a restart the daemon has counted one event from one source, while
// the state DB holds 21 sources: status prints the DB's totals and labels
// the process counters "since start" (issue 13: "1 events, 1 sources").
func TestStatusCountsComeFromTheDB(t *testing.T) {
	dir := t.TempDir()
	st, err := state.Open(state.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	var b state.Batch
	for i := range 21 {
		b.Sources = append(b.Sources, state.SourceUpdate{Session: 1, Source: activity.Source{
			Addr:      netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}),
			FirstSeen: now.Add(-time.Hour), LastSeen: now,
			Counts: activity.Counts{AuthFailed: 2},
		}})
	}
	if err := st.Apply(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	st.Close()

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `{"running":true,"version":"test","pid":1,"started":%q,"engine":{"events":1,"sources":1}}`, now.Format(time.RFC3339))
	}))
	defer srv.Close()
	cfg := filepath.Join(t.TempDir(), "sipsentry.toml")
	writeFile(t, cfg, fmt.Sprintf("state_dir = %q\n[metrics]\nlisten = %q\n", dir, strings.TrimPrefix(srv.URL, "http://")), 0o600)
	root := newRootCommand()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfg, "status"})
	if err := root.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "21 sources") {
		t.Errorf("status does not show the DB's 21 sources:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "since start") {
		t.Errorf("status does not label the process counters \"since start\":\n%s", out.String())
	}
}

// Issue 10: `sipsentry status` reports a degraded daemon with each reason.
func TestStatusPrintsDegradedHealth(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"running":true,"version":"test","pid":1,"health":{"status":"degraded","reasons":{"state_db":"state DB cannot be written: database or disk is full","firewall":"sipsentry's rules were removed behind its back and re-created"}}}`)
	}))
	defer srv.Close()
	cfg := filepath.Join(t.TempDir(), "sipsentry.toml")
	writeFile(t, cfg, fmt.Sprintf("state_dir = %q\n[metrics]\nlisten = %q\n", t.TempDir(), strings.TrimPrefix(srv.URL, "http://")), 0o600)
	root := newRootCommand()
	var out strings.Builder
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs([]string{"--config", cfg, "status"})
	if err := root.Execute(); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"DEGRADED", "disk is full", "re-created"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status output lacks %q:\n%s", want, out.String())
		}
	}
	if i, j := strings.Index(out.String(), "firewall"), strings.Index(out.String(), "state_db"); i < 0 || j < 0 || i > j {
		t.Errorf("conditions not in the fixed order (firewall before state_db):\n%s", out.String())
	}
}
