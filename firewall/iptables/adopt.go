package iptables

import (
	"fmt"
	"strings"

	"github.com/sipsentry/sipsentry/firewall"
)

// Ownership of a chain that lost its marker. `iptables -F SIPSENTRY`, a
// control panel reloading the firewall or a deleted first rule leave a
// chain of sipsentry's name without the marker. Refusing it would leave
// the PBX unprotected until a person came (under systemd: a restart
// loop), so such a chain is adopted when it is empty or holds only rules
// sipsentry itself writes in some mode, at least one naming its sets. Any
// other rule makes it someone else's.

// adoptable tells whether a chain without the marker may be taken over.
func (b *Backend) adoptable(fam string, rules []string) bool {
	if len(rules) == 0 {
		return true
	}
	shapes := map[string]bool{}
	for _, mode := range []firewall.Mode{firewall.ModeEnforce, firewall.ModeMonitor} {
		for _, geoDrop := range []bool{true, false} {
			for _, r := range b.chainRulesFor(fam, mode, geoDrop) {
				shapes[r.line] = true
			}
		}
	}
	namesOurSet := false
	for _, l := range rules {
		if !shapes[l] {
			return false
		}
		if strings.Contains(l, " --match-set "+b.prefix) {
			namesOurSet = true
		}
	}
	return namesOurSet
}

// chainNotOurs explains, with the command that resolves it, why the chain
// of sipsentry's name cannot be used; nil when it is sipsentry's, absent
// or adoptable.
func (b *Backend) chainNotOurs(fam string, c chainState) error {
	if !c.exists || c.ours || b.adoptable(fam, c.rules) {
		return nil
	}
	first := ""
	for _, l := range c.rules {
		if l != b.markerLine() {
			first = l
			break
		}
	}
	ipt := iptName(fam)
	return fmt.Errorf("%w: %s chain %s holds rules sipsentry does not write (%d, the first: %q) and lacks its marker rule (-m comment --comment %s): "+
		"if nothing else uses it, empty it with `%s -t filter -F %s` and sipsentry adopts the empty chain at its next start; "+
		"if it belongs to another tool, set firewall.chain to another name",
		firewall.ErrNotOurs, ipt, b.cfg.Chain, len(c.rules), first, ownerComment, ipt, b.cfg.Chain)
}
