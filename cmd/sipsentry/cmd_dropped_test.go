package main

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/state"
)

// Issue 12: what the firewall dropped reaches the reports. A source seen
// only at the firewall is a `sources` row with status dropped, its packets,
// methods and User-Agent (escaped); --dropped selects those rows; a source
// Asterisk saw too gets the packets in its note; `status` shows the top
// dropped countries of the last hour.
func TestDroppedSourcesInSourcesAndStatus(t *testing.T) {
	dir := t.TempDir()
	st, err := state.Open(state.Path(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	var b state.Batch
	b.Sources = append(b.Sources, state.SourceUpdate{Session: 1, Source: activity.Source{
		Addr: netip.MustParseAddr("198.51.100.7"), FirstSeen: now.Add(-time.Hour), LastSeen: now,
		Counts: activity.Counts{AuthFailed: 2}}})
	if err := st.Apply(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := st.SaveDropped(ctx, []state.DroppedSource{
		{Addr: netip.MustParseAddr("203.0.113.50"), Country: "CN", FirstSeen: now.Add(-time.Minute), LastSeen: now,
			Packets: 42, Reasons: []string{"geo"}, Protos: []string{"udp"}, LastPort: 5060,
			Methods: []string{"REGISTER"}, UserAgent: "friendly-scanner\x1b[31m"},
		{Addr: netip.MustParseAddr("198.51.100.7"), Country: "JP", FirstSeen: now.Add(-time.Minute), LastSeen: now,
			Packets: 3, Reasons: []string{"ban"}, Protos: []string{"udp"}, LastPort: 5060, Methods: []string{"INVITE"}},
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg := filepath.Join(t.TempDir(), "sipsentry.toml")
	writeFile(t, cfg, fmt.Sprintf("state_dir = %q\n[metrics]\nlisten = \"\"\n", dir), 0o600)
	exec := func(args ...string) (string, error) {
		root := newRootCommand()
		var out strings.Builder
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--config", cfg}, args...))
		err := root.Execute()
		return out.String(), err
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec(args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return out
	}
	all := run("sources", "--json")
	for _, want := range []string{`"203.0.113.50"`, `"dropped"`, "dropped at the firewall: 42 packets (REGISTER), by geo",
		"dropped at the firewall: 3 packets (INVITE), by ban"} {
		if !strings.Contains(all, want) {
			t.Errorf("sources --json lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "\x1b") {
		t.Errorf("the dropped source's User-Agent is printed raw:\n%q", all)
	}
	only := run("sources", "--dropped", "--json")
	if !strings.Contains(only, "203.0.113.50") || strings.Contains(only, "198.51.100.7") {
		t.Errorf("sources --dropped should list only the dropped-only source:\n%s", only)
	}
	// No daemon runs (status exits 1 for that); the DB part is printed.
	if status, _ := exec("status"); !strings.Contains(status, "dropped, last hour") || !strings.Contains(status, "CN 1 sources/42 packets") {
		t.Errorf("status lacks the top dropped countries:\n%s", status)
	}
}
