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
	"encoding/json"
	"errors"
	"fmt"
	"github.com/sipsentry/sipsentry/hostaddr"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
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
	// Backend, when set, is used instead of the one the config names (tests
	// hand in a dry-run backend that plays the kernel). Run closes it.
	Backend firewall.Backend
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
	fw   firewall.Backend
	fwUp atomic.Bool // for /healthz and status
	eng  *engine.Engine
	met  *metrics.Metrics
	amiC *ami.Client // nil with --replay
	// events is the client whose dispatcher hands security events to the
	// engine: amiC, or with --replay a client that is only fed the capture.
	events *ami.Client
	ari    *ariwatch.Watcher
	replay string
	recent *recentEvents
	out    io.Writer // replay output (decisions, dry-run operations)

	// Cached parts of /status, /healthz and /metrics (status.go).
	snap      *cached[engine.Status]
	fwStatus  *cached[fwStatusResult]
	dbSummary *cached[*state.Summary]
	statusDoc *cached[json.RawMessage]

	// health holds the conditions services report (health.go); writes is
	// the state DB's write health (the store, or a test's fake).
	health healthBoard
	writes stateWriteHealth

	ccMu sync.Mutex
	ccFP string // fingerprint of the lists last put into allow-cc

	dw *dropwatchService // nil unless the firewall copies drops to NFLOG
	cs *crowdsecService  // nil unless [crowdsec] is enabled
	// probations are the push probations dropwatch admitted (firewall.SetProbation).
	probationsMu sync.Mutex
	probations   map[netip.Addr]admission
	// hosts follows the host's addresses by netlink (nil: netlink failed,
	// the engine read the interfaces once at start).
	hosts *hostaddr.Set

	// verifier compares the kernel with desired{} (nil: the backend cannot);
	// verifyReq asks for a pass now; repairs counts what it repaired.
	verifier  firewall.Verifier
	verifyReq chan struct{}
	repairs   *firewall.RepairCounter

	closers []func() // run when Run returns, last first (onClose)
}

// Run wires the daemon together from cfg and runs its services until ctx
// ends (or, with Options.Replay, until the capture's end). Errors caused by
// the configuration or the replay file, before anything was changed, match
// ErrConfig.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	d := newDaemon(cfg, o)
	defer d.closeAll()
	tctx, stopTrim := context.WithCancel(ctx)
	defer stopTrim()
	go trimWhenIdle(tctx)

	in, err := d.openInputs(o)
	if err != nil {
		return err
	}
	if err := d.openKernel(ctx, o); err != nil {
		return err
	}
	if err := d.wire(in); err != nil {
		return err
	}
	if err := d.bringUp(ctx, o); err != nil {
		return err
	}
	d.log.Info("run: started", "version", d.version, "firewall_mode", cfg.Firewall.Mode,
		"backend", cfg.Firewall.Backend, "geo_mode", cfg.Engine.GeoMode, "allow_countries", cfg.Geo.AllowCountries,
		"state_db", d.store.Path())
	err = d.serve(ctx, d.services(in.metricsLn, in.ctl))
	if o.Replay != "" && err == nil {
		d.printReplaySummary(d.out)
	}
	d.log.Info("run: stopped", "events", d.events.Stats().SecurityEvents)
	return err
}

func newDaemon(cfg *config.Config, o Options) *daemon {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A fault that repeats (a full disk under the engine's writer, ten
	// times a second) is logged once a minute with a count.
	log = slog.New(newRateLimited(log.Handler(), time.Minute))
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	for _, w := range cfg.Warnings {
		log.Warn("run: deprecated setting", "warning", w)
	}
	return &daemon{cfg: cfg, cfgPath: o.ConfigPath, log: log, version: o.Version, started: time.Now(), replay: o.Replay,
		recent: newRecentEvents(20), out: out, verifyReq: make(chan struct{}, 1), repairs: firewall.NewRepairCounter(),
		probations: map[netip.Addr]admission{}}
}

// onClose registers f to run when Run returns, last registered first.
func (d *daemon) onClose(f func()) { d.closers = append(d.closers, f) }

func (d *daemon) closeAll() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// inputs are what openInputs read or opened before anything else.
type inputs struct {
	amiSecret, ariPassword string
	metricsLn              net.Listener
	ctl                    *controlService
}

// openInputs checks the replay file, reads the secrets and opens the
// listeners before anything touches the kernel, so a bad secret or a second
// daemon on the same config stops here with the kernel left alone.
func (d *daemon) openInputs(o Options) (in inputs, err error) {
	cfg := d.cfg
	if o.Replay != "" {
		if _, err := os.Stat(o.Replay); err != nil {
			return in, configErrorf("run: --replay: %v", err)
		}
	} else if in.amiSecret, err = cfg.AMISecret(); err != nil {
		return in, configError{err}
	}
	if cfg.ARI.URL != "" && o.Replay == "" {
		if in.ariPassword, err = cfg.ARIPassword(); err != nil {
			return in, configError{err}
		}
	}
	if cfg.Metrics.Listen != "" {
		if in.metricsLn, err = metrics.Listen(cfg.Metrics.Listen); err != nil {
			if errors.Is(err, metrics.ErrNotLoopback) || errors.Is(err, metrics.ErrBadAddress) {
				return in, configError{err}
			}
			return in, err
		}
		ln := in.metricsLn
		d.onClose(func() { ln.Close() }) // Serve closes it too; this covers an early return
	}
	if in.ctl, err = newControlService(d, o.Replay != ""); err != nil {
		return in, err
	}
	d.onClose(func() { in.ctl.Close() })
	return in, nil
}

// openKernel opens the state DB (checked, a corrupt one moved aside), the
// lists and the firewall backend; after a corrupt DB the kernel's sets are
// read back as the truth before anything changes them.
func (d *daemon) openKernel(ctx context.Context, o Options) error {
	cfg := d.cfg
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("run: creating state_dir: %w", err)
	}
	rebuilt, err := d.openState(ctx)
	if err != nil {
		return err
	}
	d.onClose(func() { d.store.Close() })
	d.writes = d.store
	if d.geo, err = geo.Open(GeoOptions(cfg.Geo, cfg.StateDir), d.log); err != nil {
		return err
	}
	if err := d.requireAllowedLists(ctx); err != nil {
		return err
	}
	be := o.Backend
	if be == nil {
		// A replay into a dry-run backend prints every operation on stdout.
		var dryRunOut io.Writer
		if o.Replay != "" {
			dryRunOut = d.out
		}
		if be, err = OpenFirewall(d.countryDropSafe(cfg.Firewall), d.log, dryRunOut); err != nil {
			return fmt.Errorf("run: %w", err)
		}
	}
	d.onClose(func() { be.Close() })
	d.fw = be
	d.verifier, _ = be.(firewall.Verifier)
	d.met = metrics.New(nil)
	if rebuilt {
		d.adoptKernelSets(ctx)
	}
	if err := d.met.Register(d.geo, d.repairs); err != nil {
		d.log.Warn("run: geo metrics not exported", "err", err)
	}
	return nil
}

// wire builds the AMI client (or the replay's feed), ARI and the engine.
func (d *daemon) wire(in inputs) error {
	cfg := d.cfg
	// The host's addresses are followed by netlink until the daemon closes.
	hostCtx, stopHostWatch := context.WithCancel(context.Background())
	d.onClose(stopHostWatch)
	deps := engine.Deps{Firewall: d.fw, Geo: d.geo, Store: d.store, Logger: d.log, OnDecision: d.onDecision,
		LocalReason: d.localReason(hostCtx, d.log)}
	if d.replay == "" {
		cc, err := AMIClientConfig(cfg, in.amiSecret, d.log)
		if err != nil {
			return err
		}
		cc.OnConnect = d.onAMIConnect
		d.amiC = ami.NewClient(cc)
		d.events = d.amiC
		deps.Contacts = d.amiC
	} else {
		d.events = ami.NewClient(ami.ClientConfig{Logger: d.log})
	}
	if cfg.ARI.URL != "" && d.replay == "" {
		acfg := ariwatch.FromConfig(cfg.ARI, in.ariPassword, d.log)
		acfg.OnEvent = d.met.ARIEvent
		var err error
		if d.ari, err = ariwatch.New(acfg); err != nil {
			return configError{err}
		}
		if cfg.ARI.HangupOnBan {
			deps.Hangup = d.ari.Hangup
		}
	}
	var err error
	if d.eng, err = engine.New(EngineOptions(cfg), deps); err != nil {
		return configError{err}
	}
	d.protectAMIHost()
	return nil
}

// protectAMIHost: the engine protects ami.address when it is an IP literal;
// a host name is resolved here so Asterisk's own address is never banned
// either.
func (d *daemon) protectAMIHost() {
	host, _, err := net.SplitHostPort(d.cfg.AMI.Address)
	if err != nil || d.replay != "" {
		return
	}
	if _, perr := netip.ParseAddr(host); perr == nil {
		return
	}
	lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	addrs, err := net.DefaultResolver.LookupNetIP(lctx, "ip", host)
	cancel()
	if err != nil {
		d.log.Warn("run: cannot resolve ami.address; its address is not on the never-ban list", "host", host, "err", err)
	}
	for _, a := range addrs {
		d.eng.SetAMIPeer(a)
	}
}

// bringUp puts the firewall up (allow-cc filled before any DROP rule), lets
// the engine restore into it, and builds the services that need the
// started engine.
func (d *daemon) bringUp(ctx context.Context, o Options) error {
	if err := d.firewallUp(ctx); err != nil {
		return err
	}
	if o.DownOnExit {
		d.onClose(d.downOnExit)
	} else {
		d.onClose(func() {
			d.log.Info("run: firewall left up: bans keep protecting the PBX (sipsentry firewall down removes it)")
		})
	}
	if err := d.eng.Start(ctx); err != nil {
		return fmt.Errorf("run: starting the engine: %w", err)
	}
	var err error
	if d.dw, err = newDropwatchService(d, o.Replay != ""); err != nil {
		return configError{err}
	}
	if o.Replay == "" {
		if d.cs, err = newCrowdsecService(d); err != nil {
			return configError{err}
		}
	}
	d.subscribe()
	d.initStatusCaches()
	d.met.SetState(d.metricsState)
	// The start-up bulk loads (lists, restore scripts, DB rows) leave garbage
	// several times the size of what stays live; hand it back to the OS now
	// rather than keep it as idle heap for the daemon's whole life.
	debug.FreeOSMemory()
	return nil
}

func (d *daemon) downOnExit() {
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d.fwUp.Store(false)
	if err := d.fw.Down(dctx); err != nil {
		d.log.Error("run: --down-on-exit: removing the firewall failed", "err", err)
	} else {
		d.log.Info("run: firewall removed (--down-on-exit)")
	}
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
		d.events.Feed(ctx, m)
	}
	st, es := rd.Stats(), d.events.Stats()
	d.log.Info("run: replay finished", "file", path, "messages", st.Messages, "malformed", st.Malformed,
		"oversized", st.Oversized, "security_events", es.SecurityEvents, "without_source", es.Unusable)
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
		d.events.Stats().SecurityEvents, d.events.Stats().Unusable, len(bans))
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
	if changed := restartOnlyChanges(d.cfg, nc); len(changed) > 0 {
		d.log.Warn("run: these changes take effect at the next restart (systemctl restart sipsentry)", "settings", changed)
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

// restartOnlyChanges names the settings that changed between old and nc
// but that a reload does not apply: everything the daemon opens or builds
// once at start. What a reload applies is the engine's options (thresholds,
// geo_mode's policy, push patterns, firewall.allow) and dropwatch's.
func restartOnlyChanges(old, nc *config.Config) []string {
	fwOld, fwNew := old.Firewall, nc.Firewall
	fwOld.Allow, fwNew.Allow = nil, nil
	var out []string
	for _, c := range []struct {
		name    string
		changed bool
	}{
		{"state_dir", nc.StateDir != old.StateDir},
		{"[ami]", !reflect.DeepEqual(nc.AMI, old.AMI)},
		{"[ari]", !reflect.DeepEqual(nc.ARI, old.ARI)},
		{"[metrics]", nc.Metrics != old.Metrics},
		{"[control]", !reflect.DeepEqual(nc.Control, old.Control)},
		{"[crowdsec]", !reflect.DeepEqual(nc.Crowdsec, old.Crowdsec)},
		{"[geo] (lists, guards, databases)", !reflect.DeepEqual(nc.Geo, old.Geo)},
		{"[firewall] (but allow) and the country DROP rule of engine.geo_mode", !reflect.DeepEqual(fwNew, fwOld)},
	} {
		if c.changed {
			out = append(out, c.name)
		}
	}
	return out
}

func (d *daemon) metricsState() metrics.State {
	s := metrics.State{FirewallUp: d.fwUp.Load(), ARIEnabled: d.ari != nil, Degraded: d.degraded()}
	if d.amiC != nil {
		s.AMIConnected = d.amiC.Connected()
		if !s.AMIConnected && d.amiC.DownFor() <= d.amiC.ReconnectBudget() {
			s.AMIReconnecting = true
		}
		st := d.amiC.Stats()
		s.AMILogins, s.AMIEventsDropped, s.AMIListOverflows = st.Logins, st.EventsDropped, st.ListOverflows
	} else {
		s.AMIConnected = true // a replay has no AMI connection to lose
	}
	if d.ari != nil {
		s.ARIConnected = d.ari.Connected()
	}
	snap := d.snap.get(context.Background())
	s.BansActive, s.LearnedAllows = snap.ActiveBans, snap.LearnedAllows
	s.SourcesTracked, s.SourcesEvicted, s.Unattributed = snap.Sources, snap.Evicted, snap.Malformed
	s.EventLogDropped, s.PushDropped = snap.DroppedWrites, snap.DroppedPush
	s.SourceRowsWaiting, s.SourceRowsOldestWait = snap.SourceRows.Waiting, snap.SourceRows.OldestWait
	s.SourceRowsWritten, s.SourceRowsDropped = snap.SourceRows.Written, snap.DroppedSource
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

// countryDropSafe turns the country drop off when an allowed list (say
// jp-ipv4) has no good copy at all while another is loaded: dropping by
// country then would drop every phone of that family. A file simply absent
// from geo.lists_dir does not count (the admin chose the files there). Bans still work; the
// log says so at every start and geo's health (doctor, /healthz) names the
// list. No list at all is refused earlier (requireAllowedLists).
func (d *daemon) countryDropSafe(fw config.Firewall) config.Firewall {
	if fw.Mode != "enforce" || !fw.GeoDrop {
		return fw
	}
	var lists []string
	for _, p := range d.geo.Health() {
		// A file the admin left out of geo.lists_dir (say no jp-ipv6.txt)
		// is their choice; one that is there but refused, or a download
		// that never arrived, is not.
		if p.NoGoodCopy && (p.Check != geo.CheckMissing || d.cfg.Geo.ListsDir == "") {
			lists = append(lists, p.List)
		}
	}
	if len(lists) > 0 {
		d.log.Error("run: not dropping by country: an allowed list has no good copy; bans still work",
			"lists", lists, "fix", "run `sipsentry lists update` (or put the file in geo.lists_dir), then restart")
		fw.GeoDrop = false
	}
	return fw
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
