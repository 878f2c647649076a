package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/metrics"
)

// service is one long-running part of the daemon. Run returns nil when ctx
// ends; an error ends the daemon (prefixed with the service's name). A
// service marked ends stops the daemon when it returns at all (the AMI
// session, a replay's end); its errors are returned as they are.
type service struct {
	name string
	run  func(ctx context.Context) error
	ends bool
}

// services lists what runs once everything is wired: each started and
// awaited in one place (serve).
func (d *daemon) services(metricsLn net.Listener, ctl *controlService) []service {
	var svcs []service
	if d.replay != "" {
		svcs = append(svcs, service{name: "replay", run: d.replayService, ends: true})
	} else {
		svcs = append(svcs, service{name: "ami", run: d.amiService, ends: true})
	}
	if metricsLn != nil {
		svcs = append(svcs, service{name: "metrics", run: func(ctx context.Context) error {
			h := d.met.Handler(d.status)
			if d.cfg.Metrics.Pprof {
				h = d.met.HandlerWithPprof(d.status)
			}
			return metrics.Serve(ctx, metricsLn, h, d.log)
		}})
	}
	if d.replay == "" {
		svcs = append(svcs,
			service{name: "geo", run: d.geoService},
			service{name: "allow-cc", run: d.followLists})
	}
	if d.ari != nil {
		svcs = append(svcs, service{name: "ari", run: d.ari.Run})
	}
	if d.dw != nil {
		svcs = append(svcs, service{name: "dropwatch", run: d.dw.Run})
	}
	if d.cs != nil {
		svcs = append(svcs, service{name: "crowdsec", run: d.cs.Run})
	}
	svcs = append(svcs, service{name: "control", run: ctl.Run}, service{name: "reload", run: d.reloadService})
	if d.verifier != nil {
		svcs = append(svcs, service{name: "verifier", run: d.verifyService})
	}
	return svcs
}

// serve runs the engine's loop and every service until ctx ends, a service
// fails, or one marked ends returns; then it stops the services, waits for
// each, and stops the engine's loop last so pending writes are flushed
// after the inputs ended.
func (d *daemon) serve(ctx context.Context, svcs []service) error {
	engCtx, engCancel := context.WithCancel(context.Background())
	engDone := make(chan error, 1)
	go func() { engDone <- d.eng.Run(engCtx) }()
	defer func() {
		engCancel()
		if err := <-engDone; err != nil {
			d.log.Error("run: engine stopped with an error", "err", err)
		}
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		svc service
		err error
	}
	done := make(chan result, len(svcs))
	for _, s := range svcs {
		go func() { done <- result{s, s.run(ctx)} }()
	}
	var first error
	for running := len(svcs); running > 0; running-- {
		r := <-done
		if ctx.Err() != nil {
			continue // stopping: the others end now
		}
		if r.err != nil {
			first = r.err
			if !r.svc.ends { // those say what failed and how to fix it themselves
				first = fmt.Errorf("%s: %w", r.svc.name, r.err)
			}
			cancel()
		} else if r.svc.ends {
			cancel()
		}
	}
	return first
}

// amiService is the AMI session: its end (a refused login) ends the daemon.
func (d *daemon) amiService(ctx context.Context) error {
	if err := d.amiC.Run(ctx); err != nil {
		return fmt.Errorf("run: %w (fix [ami] username/secret and manager.conf, then restart)", err)
	}
	return nil
}

// replayService feeds the capture, then waits for the push learner and the
// DB writer so the summary is complete.
func (d *daemon) replayService(ctx context.Context) error {
	if err := d.runReplay(ctx, d.replay); err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.eng.Sync(sctx); err != nil {
		d.log.Warn("run: replay: waiting for pending work", "err", err)
	}
	return nil
}

// geoService refreshes the lists every geo.refresh.
func (d *daemon) geoService(ctx context.Context) error {
	if err := d.geo.Run(ctx); ctx.Err() == nil {
		return err
	}
	return nil
}

// reloadService reloads on SIGHUP, then verifies the kernel at once.
func (d *daemon) reloadService(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			d.reload(ctx)
			d.verifyNow()
		}
	}
}

// verifyNow asks the verifier for a pass now (after a reload); a pass
// already asked for is enough.
func (d *daemon) verifyNow() {
	select {
	case d.verifyReq <- struct{}{}:
	default:
	}
}

// verifyService compares the kernel with the desired state every
// firewall.verify_interval and after each reload, repairs what differs,
// logs and counts each repair, and keeps the firewall health condition:
// drift that could not be repaired (someone else's object) or a check that
// cannot run turns /healthz to 503 until a pass is clean.
func (d *daemon) verifyService(ctx context.Context) error {
	var tick <-chan time.Time
	if iv := d.cfg.Firewall.VerifyInterval.D(); iv > 0 {
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-d.verifyReq:
		}
		d.verifyOnce(ctx)
	}
}

// verifyOnce is one pass of the verifier.
func (d *daemon) verifyOnce(ctx context.Context) {
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	drift, err := d.verifier.Verify(vctx, desired{d}, true)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		d.health.set(metrics.CondFirewall, "the kernel cannot be compared with the daemon's view: "+err.Error())
		d.log.Error("run: firewall verify failed", "err", err)
		return
	}
	d.repairs.Record(drift)
	var refused, rules []string
	for _, o := range drift.Objects {
		switch {
		case o.Repaired:
			d.log.Warn("run: kernel differed from the daemon's view; repaired", "object", o.Object,
				"missing", o.Missing, "extra", o.Extra, "changed", o.Changed, "detail", o.Detail)
			if strings.HasPrefix(o.Object, "chain") || strings.HasPrefix(o.Object, "jump") {
				rules = append(rules, o.String())
			}
		case o.Refused != nil:
			refused = append(refused, o.String())
			hint := ""
			if errors.Is(o.Refused, firewall.ErrNotOurs) {
				hint = "the object is not sipsentry's; resolve it by hand as the message says"
			}
			d.log.Error("run: kernel differs from the daemon's view and was not repaired", "object", o.Object, "err", o.Refused, "hint", hint)
		}
	}
	switch {
	case len(refused) > 0:
		d.health.set(metrics.CondFirewall, fmt.Sprintf("kernel differs from the daemon's view: %v", refused))
	case len(rules) > 0:
		// Someone removed sipsentry's rules (iptables -F, a panel reloading
		// its firewall): repaired, but said until a pass finds them intact.
		// Set members that differ are repaired and counted without this:
		// bans added while a pass runs differ for a moment by design.
		d.health.set(metrics.CondFirewall, fmt.Sprintf("sipsentry's rules were removed behind its back and re-created at %s: %v",
			time.Now().UTC().Format(time.TimeOnly), rules))
	default:
		d.health.clear(metrics.CondFirewall)
	}
}
