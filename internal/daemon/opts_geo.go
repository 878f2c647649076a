package daemon

import (
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/geoconf"
)

// GeoOptions is geoconf.Options, kept here beside the other translations
// the daemon's wiring uses.
func GeoOptions(c config.Geo, stateDir string) geo.Options { return geoconf.Options(c, stateDir) }

// GeoOptionsReadOnly is geoconf.ReadOnly: for the one-shot readers.
func GeoOptionsReadOnly(c config.Geo, stateDir string) geo.Options {
	return geoconf.ReadOnly(c, stateDir)
}
