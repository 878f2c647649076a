package iptables

import (
	"slices"
	"strconv"
)

// NFLOG copies of dropped packets (issue 12): before each DROP of the ban
// and country rules, a rule sends the packet's first nflogSize bytes to
// firewall.nflog_group, where sipsentry's dropwatch reads them. The kernel
// limits the copies (nflogLimit, nflogBurst) so a flood costs userspace a
// bounded amount of work; the DROP itself is not limited.
const (
	// NFLOGPrefixBan and NFLOGPrefixGeo tell the reader which rule dropped
	// the packet (dropwatch/nflog maps them to the reason "ban" or "geo").
	NFLOGPrefixBan = "sipsentry-ban"
	NFLOGPrefixGeo = "sipsentry-geo"
	// 512 bytes hold the headers of a typical REGISTER (~350-500 bytes).
	nflogSize  = "512"
	nflogLimit = "1000/sec"
	nflogBurst = "200"
)

// nflogRule returns the NFLOG rule that precedes a DROP matching match, or
// nothing when firewall.nflog_group is 0. The words are in the order
// `iptables -S` prints them, so Up finds the rule unchanged.
func (b *Backend) nflogRule(prefix string, match ...string) []rule {
	if b.cfg.NFLogGroup == 0 {
		return nil
	}
	args := append(slices.Clip(match), "-m", "limit", "--limit", nflogLimit, "--limit-burst", nflogBurst,
		"-j", "NFLOG", "--nflog-prefix", prefix, "--nflog-group", strconv.Itoa(int(b.cfg.NFLogGroup)), "--nflog-size", nflogSize)
	return []rule{mkRule(b.cfg.Chain, args...)}
}
