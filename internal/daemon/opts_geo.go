package daemon

import (
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/geoconf"
)

// GeoOptions is geoconf.Options for the daemon and the commands that
// maintain the lists (lists update, lists accept): they keep the last good
// copies under state_dir. One-shot readers use geoconf.Options, which
// writes nothing.
func GeoOptions(c config.Geo, stateDir string) geo.Options {
	o := geoconf.Options(c, stateDir)
	o.StoreLastGood = true
	return o
}
