package daemon

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/sipsentry/sipsentry/hostaddr"
)

// localReason follows the host's addresses by netlink for the engine's
// never-ban check (engine.Deps.LocalReason), until ctx ends: an address
// added after the start is never banned, nor its subnet's network and
// broadcast addresses. Without netlink (a container without
// NETLINK_ROUTE) it returns nil and the engine reads the interface
// addresses once, at start; the log says so.
func (d *daemon) localReason(ctx context.Context, log *slog.Logger) func(netip.Addr) string {
	s, err := hostaddr.Watch(ctx, log)
	if err != nil {
		log.Warn("run: cannot follow the host's addresses by netlink; addresses added after the start are not protected from bans", "err", err)
		return nil
	}
	log.Info("run: following the host's addresses for the never-ban list", "addresses", s.String())
	d.hosts = s
	return s.Reason
}
