// Package fwopen builds the firewall backend that the options name: the
// one chooser used by `run`, `doctor` and the CLI. It exists apart from
// package firewall because the backends import firewall; it must hold no
// logic beyond choosing and constructing, and it never reads the config
// file (internal/daemon translates the [firewall] table into Options).
package fwopen

import (
	"fmt"
	"io"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/firewall/iptables"
)

// Backend names.
const (
	IPTables = "iptables"
	DryRun   = "dry-run"
)

// Options choose and configure a backend.
type Options struct {
	// Backend is IPTables (the kernel; also the empty string) or DryRun.
	Backend string
	// The kernel backend's options; the dry-run one takes Mode and
	// BanMaxElem from them.
	iptables.Options
	// DryRunOut, when not nil, receives one line per operation the
	// dry-run backend would make.
	DryRunOut io.Writer
}

// Open returns the backend o.Backend names.
func Open(o Options) (firewall.Backend, error) {
	switch o.Backend {
	case DryRun:
		return dryrun.New(dryrun.Options{Mode: o.Mode, MaxElem: o.BanMaxElem, Log: o.DryRunOut}), nil
	case IPTables, "":
		b, err := iptables.New(o.Options)
		if err != nil {
			return nil, fmt.Errorf("%w (or set firewall.backend = \"dry-run\" to try without the kernel)", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("fwopen: unknown firewall.backend %q: want \"iptables\" or \"dry-run\"", o.Backend)
	}
}
