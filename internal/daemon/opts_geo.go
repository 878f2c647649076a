package daemon

import (
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
)

// GeoOptions translates the [geo] settings and state_dir into geo's own
// options: the one place geo's settings are read, for the daemon and for
// every command that opens the lists or databases. The country codes were
// validated by config.Parse (or by the command flag that set them).
func GeoOptions(c config.Geo, stateDir string) geo.Options {
	return geo.Options{
		AllowCountries:   c.AllowCountries,
		MMDB:             c.MMDB,
		ASNMMDB:          c.ASNMMDB,
		ListURLv4:        c.ListURLv4,
		ListURLv6:        c.ListURLv6,
		ListsDir:         c.ListsDir,
		StateDir:         stateDir,
		Refresh:          c.Refresh.D(),
		MinEntries:       c.MinEntries,
		MaxShrink:        c.MaxShrink,
		MaxChurn:         c.MaxChurn,
		DownloadTimeout:  c.DownloadTimeout.D(),
		MaxDownloadBytes: c.MaxDownloadBytes,
	}
}
