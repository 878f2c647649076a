package daemon

import (
	"log/slog"
	"path/filepath"
	"testing"

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
