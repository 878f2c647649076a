package daemon

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/sipsentry/sipsentry/hostaddr"
)

// hostLocalReason is the engine's never-ban answer for the host's own
// addresses and its subnets' network and broadcast addresses, kept current
// by a netlink watch for as long as ctx lives (an address added after start
// is protected at once). Without netlink it returns nil: the engine then
// falls back to the interface addresses at start, with a warning here.
func hostLocalReason(ctx context.Context, log *slog.Logger) func(netip.Addr) string {
	set, err := hostaddr.Watch(ctx, log)
	if err != nil {
		log.Warn("run: cannot watch the host's addresses by netlink; protecting those present at start only", "err", err)
		return nil
	}
	log.Info("run: never banned: the host's addresses, followed by netlink", "addresses", set.String())
	return set.Reason
}
