// Package daemon is `sipsentry run`: it wires the AMI client (or a replayed
// capture), the engine, the firewall backend, the country lists, the state
// store, ARI and the metrics/status listener together, and runs them until
// the context ends. SIGHUP reloads the configuration and the lists.
//
// It never changes the kernel before the configuration, the secrets and the
// metrics listener were accepted (a second daemon stops before touching
// anything), never builds a shell command, and never logs a secret.
package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/geo"
	"github.com/sipsentry/sipsentry/internal/ariwatch"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/metrics"
	"github.com/sipsentry/sipsentry/state"
)

// Options are what `sipsentry run`'s flags and globals hand the daemon.
type Options struct {
	// ConfigPath is re-read on SIGHUP and shown on the status page.
	ConfigPath string
	// Replay, when set, is a raw AMI capture fed through the same path as
	// live events instead of an AMI connection; Run returns at its end.
	Replay string
	// DownOnExit removes sipsentry's rules and sets when Run returns.
	DownOnExit bool
	// Out receives the replay's decisions, the dry-run backend's operations
	// during a replay and the replay summary (nil: discarded).
	Out io.Writer
	// Logger is the process logger (nil: discarded).
	Logger *slog.Logger
	// Version is logged at start and shown on the status page.
	Version string
}

// ErrConfig matches the errors caused by the configuration, the secrets or
// the replay file: nothing was changed, and the command exits 2 (usage).
var ErrConfig = errors.New("daemon: configuration error")

// configError keeps the underlying message unchanged and matches ErrConfig.
type configError struct{ err error }

func (e configError) Error() string        { return e.err.Error() }
func (e configError) Unwrap() error        { return e.err }
func (e configError) Is(target error) bool { return target == ErrConfig }

func configErrorf(format string, args ...any) error {
	return configError{fmt.Errorf(format, args...)}
}

// daemon holds what Run wires together.
type daemon struct {
	cfg     *config.Config
	cfgPath string
	log     *slog.Logger
	version string
	started time.Time

	store *state.Store
	geo   *geo.Geo
	// fw is handed to the engine unwrapped, so the optional interfaces it
	// probes (firewall.FlowDropper, BulkFlowDropper) stay visible.
	fw     firewall.Backend
	fwUp   atomic.Bool // for /healthz and status
	eng    *engine.Engine
	met    *metrics.Metrics
	amiC   *ami.Client // nil with --replay
	ari    *ariwatch.Watcher
	replay string
	recent *recentEvents
	out    io.Writer // replay output (decisions, dry-run operations)

	ccMu    sync.Mutex
	ccFP    string // fingerprint of the lists last put into allow-cc
	handled atomic.Uint64
	skipped atomic.Uint64

	dw *dropwatchService // nil unless the firewall copies drops to NFLOG
	cs *crowdsecService  // nil unless [crowdsec] is enabled
}

// Run wires the daemon together from cfg and runs it until ctx ends (or, with
// Options.Replay, until the capture's end). Errors caused by the
// configuration or the replay file, before anything was changed, match
// ErrConfig.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	tctx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go trimWhenIdle(tctx)
	var err error
	for _, w := range cfg.Warnings {
		log.Warn("run: deprecated setting", "warning", w)
	}
	d := &daemon{cfg: cfg, cfgPath: o.ConfigPath, log: log, version: o.Version, started: time.Now(), replay: o.Replay, recent: newRecentEvents(20), out: out}
	if o.Replay != "" {
		if _, err := os.Stat(o.Replay); err != nil {
			return configErrorf("run: --replay: %v", err)
		}
	}
	// Secrets are read before anything touches the kernel, so a bad secret
	// file stops the start cleanly.
	var amiSecret, ariPassword string
	if o.Replay == "" {
		if amiSecret, err = cfg.AMISecret(); err != nil {
			return configError{err}
		}
	}
	if cfg.ARI.URL != "" && o.Replay == "" {
		if ariPassword, err = cfg.ARIPassword(); err != nil {
			return configError{err}
		}
	}

	// The listener is opened before anything else is touched, so a second
	// daemon on the same config stops here, with the kernel left alone.
	var metricsLn net.Listener
	if cfg.Metrics.Listen != "" {
		if metricsLn, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
			if errors.Is(err, metrics.ErrNotLoopback) || errors.Is(err, metrics.ErrBadAddress) {
				return configError{err}
			}
			return err
		}
		defer metricsLn.Close() // Serve closes it too; this covers an early return
	}
	ctl, err := newControlService(d, o.Replay != "") // the control socket: same reason
	if err != nil {
		return err
	}
	defer ctl.Close()

	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("run: creating state_dir: %w", err)
	}
	d.store, err = state.Open(state.Path(cfg.StateDir))
	if err != nil {
		return err
	}
	defer d.store.Close()

	d.geo, err = geo.Open(GeoOptions(cfg.Geo, cfg.StateDir), log)
	if err != nil {
		return err
	}

	if err := d.requireAllowedLists(ctx); err != nil {
		return err
	}
	// A replay into a dry-run backend prints every operation on stdout.
	var dryRunOut io.Writer
	if o.Replay != "" {
		dryRunOut = d.out
	}
	be, err := OpenFirewall(cfg.Firewall, log, dryRunOut)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	defer be.Close()
	d.met = metrics.New(nil)
	d.fw = be
	if err := d.met.Register(d.geo); err != nil {
		log.Warn("run: geo metrics not exported", "err", err)
	}

	deps := engine.Deps{Firewall: d.fw, Geo: d.geo, Store: d.store, Logger: log, OnDecision: d.onDecision}
	if o.Replay == "" {
		cc, err := AMIClientConfig(cfg, amiSecret, log)
		if err != nil {
			return err
		}
		cc.OnConnect = d.onAMIConnect
		cc.OnMessage = func(m ami.Message) { d.handleMessage(ctx, m) }
		d.amiC = ami.NewClient(cc)
		deps.Contacts = d.amiC
	}
	if cfg.ARI.URL != "" && o.Replay == "" {
		acfg := ariwatch.FromConfig(cfg.ARI, ariPassword, log)
		acfg.OnEvent = d.met.ARIEvent
		d.ari, err = ariwatch.New(acfg)
		if err != nil {
			return configError{err}
		}
		if cfg.ARI.HangupOnBan {
			deps.Hangup = d.ari.Hangup
		}
	}
	d.eng, err = engine.New(EngineOptions(cfg), deps)
	if err != nil {
		return configError{err}
	}

	// The engine protects ami.address when it is an IP literal; a host name
	// is resolved here so Asterisk's own address is never banned either.
	if host, _, err := net.SplitHostPort(cfg.AMI.Address); err == nil && o.Replay == "" {
		if _, perr := netip.ParseAddr(host); perr != nil {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", host)
			cancel()
			if err != nil {
				log.Warn("run: cannot resolve ami.address; its address is not on the never-ban list", "host", host, "err", err)
			}
			for _, a := range addrs {
				d.eng.SetAMIPeer(a)
			}
		}
	}

	// The firewall goes up before the engine restores bans into it, with the
	// allowed-country set filled before any DROP rule exists (UpWith).
	if err := d.firewallUp(ctx); err != nil {
		return err
	}
	if o.DownOnExit {
		defer func() {
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			d.fwUp.Store(false)
			if err := d.fw.Down(dctx); err != nil {
				log.Error("run: --down-on-exit: removing the firewall failed", "err", err)
			} else {
				log.Info("run: firewall removed (--down-on-exit)")
			}
		}()
	} else {
		defer log.Info("run: firewall left up: bans keep protecting the PBX (sipsentry firewall down removes it)")
	}
	if err := d.eng.Start(ctx); err != nil {
		return fmt.Errorf("run: starting the engine: %w", err)
	}
	if d.dw, err = newDropwatchService(d, o.Replay != ""); err != nil {
		return configError{err}
	}
	if o.Replay == "" {
		if d.cs, err = newCrowdsecService(d); err != nil {
			return configError{err}
		}
	}
	d.met.SetState(d.metricsState)
	// The start-up bulk loads (lists, restore scripts, DB rows) leave garbage
	// several times the size of what stays live; hand it back to the OS now
	// rather than keep it as idle heap for the daemon's whole life.
	debug.FreeOSMemory()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	// The engine's background loop (batched writes, expiry) stops last: it
	// gets its own context so pending writes are flushed after the inputs end.
	engCtx, engCancel := context.WithCancel(context.Background())
	engDone := make(chan error, 1)
	go func() { engDone <- d.eng.Run(engCtx) }()
	stopEngine := func() {
		engCancel()
		if err := <-engDone; err != nil {
			log.Error("run: engine stopped with an error", "err", err)
		}
	}

	if metricsLn != nil {
		ln := metricsLn
		goRun("metrics", func(ctx context.Context) error {
			return metrics.Serve(ctx, ln, d.met.Handler(d.status), log)
		})
	}
	if o.Replay == "" {
		goRun("geo", func(ctx context.Context) error {
			if err := d.geo.Run(ctx); ctx.Err() == nil {
				return err
			}
			return nil
		})
		goRun("allow-cc", d.followLists)
	}
	if d.ari != nil {
		goRun("ari", d.ari.Run)
	}
	if d.dw != nil {
		goRun("dropwatch", d.dw.Run)
	}
	if d.cs != nil {
		goRun("crowdsec", d.cs.Run)
	}
	goRun("control", ctl.Run)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.reload(ctx)
			}
		}
	}()

	log.Info("run: started", "version", d.version, "firewall_mode", cfg.Firewall.Mode,
		"backend", cfg.Firewall.Backend, "geo_mode", cfg.Engine.GeoMode, "allow_countries", cfg.Geo.AllowCountries,
		"state_db", d.store.Path())

	var runErr error
	if o.Replay != "" {
		runErr = d.runReplay(ctx, o.Replay)
		if runErr == nil {
			// Let the push learner and the DB writer finish before the summary.
			sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
			if err := d.eng.Sync(sctx); err != nil {
				log.Warn("run: replay: waiting for pending work", "err", err)
			}
			scancel()
		}
	} else {
		amiErr := make(chan error, 1)
		wg.Add(1)
		go func() { defer wg.Done(); amiErr <- d.amiC.Run(ctx) }()
		select {
		case <-ctx.Done():
		case err := <-amiErr:
			if err != nil {
				runErr = fmt.Errorf("run: %w (fix [ami] username/secret and manager.conf, then restart)", err)
			}
		case err := <-errc:
			runErr = err
		}
	}
	cancel()
	wg.Wait()
	stopEngine()
	if o.Replay != "" && runErr == nil {
		d.printReplaySummary(d.out)
	}
	log.Info("run: stopped", "events", d.handled.Load())
	return runErr
}

// handleMessage is the hot path: one AMI message from the client (or the
// replay) to a decision.
func (d *daemon) handleMessage(ctx context.Context, m ami.Message) {
	t0 := time.Now()
	typ := m.Get("Event")
	if typ == "" {
		return
	}
	if !ami.IsSecurityEvent(&m) {
		d.met.AMIEvent(otherEventLabel(typ))
		return
	}
	d.met.AMIEvent(typ) // one of the fixed security types
	ev, err := ami.ParseSecurityEvent(&m)
	if err != nil {
		d.skipped.Add(1)
		d.log.Debug("run: security event without a usable source", "event", typ, "err", err)
		return
	}
	d.eng.Handle(ctx, ev)
	d.dw.securityEvent(ctx, &ev)
	d.handled.Add(1)
	d.recent.add(ev, t0)
}

// otherEventLabel bounds the metric label of non-security events: an
// injected "Event:" header (recorded s9-11) must not mint a time series per
// attacker-chosen value.
func otherEventLabel(typ string) string {
	switch typ {
	case "ContactStatus", "PeerStatus", "DeviceStateChange", "FullyBooted", "Shutdown", "Reload":
		return typ
	}
	return "other"
}

// onAMIConnect runs after every (re)login: resynchronise what may have
// changed while the connection was down.
func (d *daemon) onAMIConnect(ctx context.Context, c *ami.Client) error {
	cs, err := c.PJSIPShowContacts(ctx)
	if err != nil {
		return fmt.Errorf("resync: PJSIPShowContacts: %w (the AMI user needs read/write=system or reporting)", err)
	}
	// The contacts feed the push learner as live registrations would: a push
	// server that registered while AMI was down is learned (or flagged) now.
	d.eng.ResyncContacts(ctx, cs)
	return nil
}

// runReplay feeds a raw capture through the same path as live events.
func (d *daemon) runReplay(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return configErrorf("run: --replay: %v", err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	rd := ami.NewReader(br, ami.ReaderOptions{})
	if head, _ := br.Peek(len("Asterisk Call Manager/")); string(head) == "Asterisk Call Manager/" {
		if _, err := rd.ReadBanner(); err != nil {
			return configErrorf("run: --replay %s: %v", path, err)
		}
	}
	for ctx.Err() == nil {
		m, err := rd.ReadMessage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return configErrorf("run: --replay %s: %v", path, err)
		}
		d.handleMessage(ctx, m)
	}
	st := rd.Stats()
	d.log.Info("run: replay finished", "file", path, "messages", st.Messages, "malformed", st.Malformed,
		"oversized", st.Oversized, "security_events", d.handled.Load(), "without_source", d.skipped.Load())
	return nil
}

func (d *daemon) printReplaySummary(w io.Writer) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	bans, err := d.store.ActiveBans(ctx)
	if err != nil {
		fmt.Fprintf(w, "replay: reading bans: %v\n", err)
		return
	}
	fmt.Fprintf(w, "replay: %d security events, %d without a usable source; %d active bans:\n",
		d.handled.Load(), d.skipped.Load(), len(bans))
	for _, b := range bans {
		tag := ""
		if b.Monitor {
			tag = " (monitor: not in the kernel)"
		}
		fmt.Fprintf(w, "  ban %s until %s offences %d: %s%s\n", b.Addr, b.Until.UTC().Format(time.RFC3339), b.Offences, b.Reason, tag)
	}
	if allows, err := d.store.LearnedAllows(ctx); err == nil {
		for _, a := range allows {
			fmt.Fprintf(w, "  allow %s (%s) account %q UA %q\n", a.Prefix, a.How, a.Account, a.UserAgent)
		}
	}
	if flags, err := d.store.Flags(ctx); err == nil {
		for _, f := range flags {
			fmt.Fprintf(w, "  flag %s %s: %s\n", f.Addr, f.Kind, f.Note)
		}
	}
}

// reload re-reads the config file and the lists (SIGHUP). Settings that need
// a restart (AMI address, firewall backend, state_dir) are reported, not applied.
func (d *daemon) reload(ctx context.Context) {
	d.log.Info("run: SIGHUP: reloading configuration and lists", "config", d.cfgPath)
	nc, err := config.Load(d.cfgPath)
	if err != nil {
		d.met.Reload(false)
		d.log.Error("run: reload failed; keeping the running configuration", "err", err)
		return
	}
	if nc.StateDir != d.cfg.StateDir || nc.AMI != d.cfg.AMI || nc.Firewall.Backend != d.cfg.Firewall.Backend ||
		nc.Firewall.Mode != d.cfg.Firewall.Mode || nc.Metrics != d.cfg.Metrics || nc.ARI != d.cfg.ARI ||
		!slices.Equal(nc.Geo.AllowCountries, d.cfg.Geo.AllowCountries) || nc.Geo.ListsDir != d.cfg.Geo.ListsDir ||
		nc.Geo.MMDB != d.cfg.Geo.MMDB || nc.Geo.ASNMMDB != d.cfg.Geo.ASNMMDB {
		d.log.Warn("run: changes to state_dir, [ami], [ari], [metrics], firewall.backend/mode and the geo countries, lists_dir and databases take effect at the next restart")
	}
	// Thresholds, geo_mode, push patterns and static allows apply now.
	if err := d.eng.Reload(ctx, EngineOptions(nc)); err != nil {
		d.met.Reload(false)
		d.log.Error("run: engine refused the new configuration; keeping the running one", "err", err)
		return
	}
	d.dw.reload(nc)
	d.geo.Reload()
	go func() {
		// Re-read (lists_dir) or re-fetch the lists, then load them into the kernel.
		if _, err := d.geo.Update(ctx, false); err != nil && ctx.Err() == nil {
			d.log.Warn("run: reload: list update incomplete; the last good lists stay in use", "err", err)
		}
		if err := d.syncAllowCountries(ctx); err != nil {
			d.log.Error("run: reload: allow-cc set not updated", "err", err)
		}
	}()
	d.met.Reload(true)
	d.log.Info("run: reloaded")
}

func (d *daemon) metricsState() metrics.State {
	s := metrics.State{FirewallUp: d.fwUp.Load(), ARIEnabled: d.ari != nil}
	if d.amiC != nil {
		s.AMIConnected = d.amiC.Connected()
		st := d.amiC.Stats()
		s.AMILogins, s.AMIEventsDropped = st.Logins, st.EventsDropped
	} else {
		s.AMIConnected = true // a replay has no AMI connection to lose
	}
	if d.ari != nil {
		s.ARIConnected = d.ari.Connected()
	}
	snap := d.eng.Snapshot()
	s.BansActive, s.LearnedAllows = snap.ActiveBans, snap.LearnedAllows
	s.SourcesTracked, s.SourcesEvicted, s.Unattributed = snap.Sources, snap.Evicted, snap.Malformed
	s.EventLogDropped, s.PushDropped = snap.DroppedWrites, snap.DroppedPush
	return s
}

// requireAllowedLists refuses to drop every country when no allowed
// country's list is loaded (first start without network, empty lists_dir):
// that would lock every phone out as surely as a config without countries.
func (d *daemon) requireAllowedLists(ctx context.Context) error {
	if d.cfg.Firewall.Mode != "enforce" || !d.cfg.Firewall.GeoDrop || len(d.geo.AllowedPrefixes()) > 0 {
		return nil
	}
	d.log.Warn("run: no allowed-country list is loaded yet; fetching the lists before the firewall goes up")
	if _, err := d.geo.Update(ctx, false); err != nil {
		d.log.Warn("run: list update incomplete", "err", err)
	}
	if len(d.geo.AllowedPrefixes()) > 0 {
		return nil
	}
	return fmt.Errorf("run: geo_mode = \"drop\" with firewall.mode = \"enforce\", but no list of the allowed countries %v is loaded, so every phone would be dropped: run `sipsentry lists update` (or fill geo.lists_dir), or start with geo_mode = \"strict\" until the lists are there",
		d.geo.AllowCountries())
}

// allowCCEntries are the allowed countries' prefixes as set entries, with
// the fingerprint of the lists they came from.
func (d *daemon) allowCCEntries() ([]firewall.Entry, string) {
	fp := listsFingerprint(d.geo.Lists())
	ps := d.geo.AllowedPrefixes()
	entries := make([]firewall.Entry, len(ps))
	for i, p := range ps {
		entries[i] = firewall.Entry{Prefix: p}
	}
	return entries, fp
}

// firewallUp brings the firewall up with allow-cc already filled.
func (d *daemon) firewallUp(ctx context.Context) error {
	d.ccMu.Lock()
	defer d.ccMu.Unlock()
	entries, fp := d.allowCCEntries()
	// firewall.allow's CIDRs are in before any DROP rule (the engine then
	// owns the whole allow set).
	if err := firewall.UpFilled(ctx, d.fw, firewall.Fill{Set: firewall.SetAllowCountry, Entries: entries},
		firewall.Fill{Set: firewall.SetAllow, Entries: FirewallStaticAllows(d.cfg.Firewall), Merge: true}); err != nil {
		return fmt.Errorf("run: firewall up: %w", err)
	}
	d.ccFP = fp
	d.fwUp.Store(true)
	d.log.Info("run: firewall up; allowed-country set loaded", "prefixes", len(entries), "countries", d.geo.AllowCountries())
	return nil
}

// syncAllowCountries puts the allowed countries' prefixes into the kernel's
// allow-cc set in one atomic swap, when they changed since the last call.
func (d *daemon) syncAllowCountries(ctx context.Context) error {
	d.ccMu.Lock()
	defer d.ccMu.Unlock()
	if fp := listsFingerprint(d.geo.Lists()); fp == d.ccFP {
		return nil
	}
	entries, fp := d.allowCCEntries()
	if err := d.fw.Replace(ctx, firewall.SetAllowCountry, entries); err != nil {
		return fmt.Errorf("run: loading %d allowed-country prefixes into the kernel: %w", len(entries), err)
	}
	d.ccFP = fp
	debug.FreeOSMemory() // the swap script and old prefixes are garbage now
	d.log.Info("run: allowed-country set loaded", "prefixes", len(entries), "countries", d.geo.AllowCountries())
	return nil
}

func listsFingerprint(ls []geo.ListInfo) string {
	var b strings.Builder
	for _, l := range ls {
		if l.Allowed {
			fmt.Fprintf(&b, "%s/%d/%d;", l.Name, l.Entries, l.Verified.UnixNano())
		}
	}
	return b.String()
}

// followLists applies list refreshes made by geo.Run to the kernel.
func (d *daemon) followLists(ctx context.Context) error {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := d.syncAllowCountries(ctx); err != nil && ctx.Err() == nil {
				d.log.Error("run: allow-cc set not updated; the previous one stays", "err", err)
			}
		}
	}
}

// onDecision feeds metrics and, in a replay, prints the decision. It runs on
// the engine's hot path and must not block.
func (d *daemon) onDecision(dec engine.Decision) {
	d.met.Decision(dec.Kind)
	d.cs.publish(dec)
	if dec.Kind == engine.DecisionBan && dec.Latency > 0 {
		// Latency runs from Handle's start to the kernel set add's return.
		d.met.EventToKernel(dec.Latency)
	}
	if d.replay != "" {
		line := fmt.Sprintf("decision: %s %s", dec.Kind, dec.Addr)
		if dec.Duration > 0 {
			line += " for " + dec.Duration.String()
		}
		if dec.Offence > 0 {
			line += fmt.Sprintf(" (offence %d)", dec.Offence)
		}
		line += ": " + dec.Reason
		if dec.Err != "" {
			line += " [" + dec.Err + "]"
		}
		fmt.Fprintln(d.out, line)
	}
}

// recentEvents keeps the last few security events for `sipsentry status`.
type recentEvents struct {
	mu  sync.Mutex
	buf []RecentEvent
	n   int
}

// RecentEvent is one line of the status page's "last events".
type RecentEvent struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Service string    `json:"service"`
	Source  string    `json:"source"`
	Account string    `json:"account,omitempty"`
	Suspect bool      `json:"injection_suspected,omitempty"`
}

func newRecentEvents(n int) *recentEvents { return &recentEvents{buf: make([]RecentEvent, 0, n), n: n} }

func (r *recentEvents) add(ev ami.SecurityEvent, at time.Time) {
	e := RecentEvent{Time: at.UTC(), Type: ev.Type, Service: ev.Service, Source: ev.Remote.Addr().String(),
		Account: ev.AccountID, Suspect: ev.IsInjection()}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) == r.n {
		copy(r.buf, r.buf[1:])
		r.buf = r.buf[:r.n-1]
	}
	r.buf = append(r.buf, e)
}

func (r *recentEvents) list() []RecentEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]RecentEvent, len(r.buf))
	for i := range r.buf {
		out[i] = r.buf[len(r.buf)-1-i] // newest first
	}
	return out
}
