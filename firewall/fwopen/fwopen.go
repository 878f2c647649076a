// Package fwopen builds the firewall backend that the [firewall] table
// names. It exists apart from package firewall because the backends import
// firewall; it must hold no logic beyond choosing and constructing.
package fwopen

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/firewall/iptables"
	"github.com/sipsentry/sipsentry/internal/config"
)

// Open returns the backend for cfg.Backend: "iptables" (the kernel) or
// "dry-run" (in memory; each operation it would make is printed to
// dryRunOut when that is not nil).
func Open(cfg config.Firewall, log *slog.Logger, dryRunOut io.Writer) (firewall.Backend, error) {
	switch cfg.Backend {
	case "dry-run":
		return dryrun.New(dryrun.Options{Mode: cfg.Mode, MaxElem: cfg.BanMaxElem, Log: dryRunOut}), nil
	case "iptables", "":
		b, err := iptables.New(cfg, log)
		if err != nil {
			return nil, fmt.Errorf("%w (or set firewall.backend = \"dry-run\" to try without the kernel)", err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("fwopen: unknown firewall.backend %q: want \"iptables\" or \"dry-run\"", cfg.Backend)
	}
}
