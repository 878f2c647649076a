package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/control"
	"github.com/sipsentry/sipsentry/state"
)

// OpenControlOffline opens the engine on the state DB and the kernel for one
// operator command (`sipsentry ban` and the others) while no daemon runs:
// the same engine calls the daemon's control socket makes, with the same
// never-ban rules, so the next start agrees with what it did. close writes
// out what is pending and closes the engine, the backend and the DB.
//
// Run it only when no daemon serves control.socket: two engines writing
// the same DB and kernel sets would each believe their own view.
func OpenControlOffline(ctx context.Context, cfg *config.Config, o OfflineOptions) (h control.Handler, close func() error, err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating state_dir: %w", err)
	}
	store, err := state.Open(state.Path(cfg.StateDir))
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, store.Close)
	g, err := geo.Open(GeoOptions(cfg.Geo, cfg.StateDir), log)
	if err != nil {
		return nil, nil, err
	}
	fwc := cfg.Firewall
	dryRunOut := o.DryRunOut
	if o.ListOnly {
		fwc.Backend, dryRunOut = "dry-run", io.Discard
	}
	fw, err := OpenFirewall(fwc, log, dryRunOut)
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, fw.Close)
	opts := EngineOptions(cfg)
	opts.AMIPeers = append(opts.AMIPeers, resolveAMIHost(ctx, cfg.AMI.Address, log)...)
	eng, err := engine.OpenOffline(ctx, opts, engine.Deps{Firewall: fw, Geo: g, Store: store, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	closers = append(closers, func() error {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return eng.Close(cctx)
	})
	return &controlHandler{eng: eng, geo: g, enforce: cfg.Firewall.Mode == "enforce"}, closeAll, nil
}

// OfflineOptions tune OpenControlOffline.
type OfflineOptions struct {
	Logger *slog.Logger
	// DryRunOut receives the operations of a dry-run backend.
	DryRunOut io.Writer
	// ListOnly is for the listings (bans, allows): they read what the
	// engine loads from the state DB, so the kernel is not opened (a
	// backend that records nothing stands in) and listing needs neither
	// CAP_NET_ADMIN nor the firewall up. The handler must then only list.
	ListOnly bool
}

// resolveAMIHost resolves ami.address when it names a host, so that
// Asterisk's own address is never banned offline either (the engine
// protects an IP literal itself).
func resolveAMIHost(ctx context.Context, address string, log *slog.Logger) []netip.Addr {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", host)
	if err != nil {
		log.Warn("cannot resolve ami.address; its address is not on the never-ban list", "host", host, "err", err)
	}
	return addrs
}
