package daemon

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/config"
)

// With jp-ipv6 loaded but no good copy of jp-ipv4 anywhere, enforce + drop
// must not drop by country (every IPv4 phone would be dropped); with both
// loaded it does.
func TestCountryDropOffWhileAListHasNoGoodCopy(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lists map[string][]string
		drop  bool
	}{
		{"v6 only", map[string][]string{"JP": {"2001:db8:1::/48"}}, false},
		{"both", map[string][]string{"JP": {"198.51.100.0/24", "2001:db8:1::/48"}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			lists := filepath.Join(dir, "lists")
			geotest.WriteLists(t, lists, tc.lists)
			cfg := config.Default()
			cfg.StateDir = filepath.Join(dir, "state")
			cfg.Geo.AllowCountries = []string{"JP"}
			cfg.Geo.ListsDir = lists
			cfg.Geo.MinEntries = 0
			g, err := geo.Open(GeoOptions(cfg.Geo, cfg.StateDir), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			d := &daemon{cfg: cfg, geo: g, log: slog.New(slog.DiscardHandler)}
			fw := cfg.Firewall
			fw.Mode, fw.GeoDrop = "enforce", true
			if got := d.countryDropSafe(fw).GeoDrop; got != tc.drop {
				t.Fatalf("country drop %v, want %v (unenforceable %v)", got, tc.drop, g.Unenforceable())
			}
		})
	}
}

// A reload names every setting it cannot apply, the new tables included.
func TestRestartOnlyChangesNamed(t *testing.T) {
	old := config.Default()
	nc := config.Default()
	if got := restartOnlyChanges(old, nc); len(got) != 0 {
		t.Fatalf("no change named %v", got)
	}
	nc.Firewall.Allow = append(nc.Firewall.Allow, config.Prefix{Prefix: netip.MustParsePrefix("203.0.113.0/24")})
	nc.Engine.MaxFailures = 9
	if got := restartOnlyChanges(old, nc); len(got) != 0 {
		t.Fatalf("firewall.allow and engine thresholds apply at reload, yet named %v", got)
	}
	nc.Geo.MinEntries = 5
	nc.Firewall.VerifyInterval = config.Duration(time.Minute)
	nc.Crowdsec.Enabled = true
	nc.Control.Socket = "/tmp/x.sock"
	got := restartOnlyChanges(old, nc)
	for _, want := range []string{"[geo] (lists, guards, databases)", "[crowdsec]", "[control]"} {
		if !slices.Contains(got, want) {
			t.Errorf("%q not named in %v", want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("named %v, want geo, firewall, crowdsec, control", got)
	}
}
