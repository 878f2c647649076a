package daemon

import (
	"io"
	"log/slog"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/fwopen"
	"github.com/sipsentry/sipsentry/internal/config"
)

// FirewallOptions translates the [firewall] table into the options of the
// one backend chooser (fwopen.Open): the only place where the firewall's
// settings are read from the config. run, doctor and the CLI call it.
// dryRunOut, when not nil, receives each operation a dry-run backend would
// make.
func FirewallOptions(c config.Firewall, log *slog.Logger, dryRunOut io.Writer) fwopen.Options {
	o := fwopen.Options{Backend: c.Backend, DryRunOut: dryRunOut}
	o.Mode = firewall.Mode(c.Mode)
	o.GeoDrop = c.GeoDrop
	o.Chain = c.Chain
	o.InputPosition = c.InputPosition
	o.UDPPorts = portRanges(c.UDPPorts)
	o.TCPPorts = portRanges(c.TCPPorts)
	o.RTPPorts = portRanges(c.RTPPorts)
	o.BanMaxElem = c.BanMaxElem
	o.NFLogGroup = c.NFLogGroup
	o.Log = log
	return o
}

// OpenFirewall opens the backend the [firewall] table names.
func OpenFirewall(c config.Firewall, log *slog.Logger, dryRunOut io.Writer) (firewall.Backend, error) {
	return fwopen.Open(FirewallOptions(c, log, dryRunOut))
}

// StaticAllowComment is the comment of the allow entries taken from
// firewall.allow.
const StaticAllowComment = "static (config)"

// FirewallStaticAllows are firewall.allow's CIDRs as allow-set entries
// (permanent). They are part of the desired allow set; the backend never
// adds them on its own.
func FirewallStaticAllows(c config.Firewall) []firewall.Entry {
	out := make([]firewall.Entry, 0, len(c.Allow))
	for _, p := range c.Allow {
		out = append(out, firewall.Entry{Prefix: p.Prefix, Comment: StaticAllowComment})
	}
	return out
}

func portRanges(rs []config.PortRange) []firewall.PortRange {
	out := make([]firewall.PortRange, len(rs))
	for i, r := range rs {
		out[i] = firewall.PortRange{From: r.From, To: r.To}
	}
	return out
}
