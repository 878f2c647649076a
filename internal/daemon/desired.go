package daemon

import (
	"iter"
	"slices"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// desired is the whole desired content of sipsentry's kernel sets, each
// from its one owner: bans and allows from the engine, the allowed
// countries' ranges from geo, remote ranges from the CrowdSec consumer.
// The firewall's Verifier compares the kernel with it.
type desired struct{ d *daemon }

var _ firewall.Desired = desired{}

// Entries yields set's desired entries. A set with no owner running (no
// CrowdSec, no country lists) is desired empty.
func (s desired) Entries(set firewall.Set) iter.Seq[firewall.Entry] {
	d := s.d
	switch set {
	case firewall.SetBan, firewall.SetAllow:
		return d.eng.Entries(set)
	case firewall.SetAllowCountry:
		return func(yield func(firewall.Entry) bool) {
			for _, p := range d.geo.AllowedPrefixes() {
				if !yield(firewall.Entry{Prefix: p}) {
					return
				}
			}
		}
	case firewall.SetBanNet:
		return slices.Values(d.cs.entries(time.Now()))
	case firewall.SetProbation:
		return slices.Values(d.probationEntries(time.Now()))
	}
	return func(func(firewall.Entry) bool) {}
}
