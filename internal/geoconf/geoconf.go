// Package geoconf translates the [geo] settings into geo's own options. It
// is its own package so that commands which must not link the daemon (and
// its SQLite store), such as sipsentry-report, share the one translation.
package geoconf

import (
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
)

// Options translates the [geo] settings and state_dir into geo's own
// options: the one place geo's settings are read, for the daemon and for
// every command that opens the lists or databases. The country codes were
// validated by config.Parse (or by the command flag that set them). The
// options write nothing under state_dir (geo.Options.StoreLastGood is
// false): the daemon and the list commands turn that on.
func Options(c config.Geo, stateDir string) geo.Options {
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
