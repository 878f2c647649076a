package daemon

// The drop-mode service of issue 12: it reads what the firewall's country
// and ban rules drop (NFLOG), aggregates it into the state DB, and runs the
// push probation. This file is the only place that translates the config
// into dropwatch's options and adapts the daemon's parts (firewall, engine,
// geo, DNS) to the small interfaces dropwatch asks for.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/dropwatch"
	"github.com/sipsentry/sipsentry/dropwatch/nflog"
	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/state"
)

// dropwatchService is one of the daemon's services: Run until ctx ends.
type dropwatchService struct {
	w     *dropwatch.Watcher
	prob  *dropwatch.Probation // nil: probation and push candidates off
	group uint16
	d     *daemon
	aors  aorSet
}

// dropwatchEnabled says whether the firewall installs the NFLOG copies the
// service reads: only the iptables backend, in enforce mode, with a group.
func dropwatchEnabled(cfg *config.Config, replay bool) bool {
	return !replay && cfg.Firewall.NFLogGroup != 0 && cfg.Firewall.Backend == "iptables" && cfg.Firewall.Mode == "enforce"
}

// newDropwatchService builds the service, or returns nil when the firewall
// copies nothing to NFLOG. Call it after the engine and the firewall exist.
func newDropwatchService(d *daemon, replay bool) (*dropwatchService, error) {
	cfg := d.cfg
	if !dropwatchEnabled(cfg, replay) {
		return nil, nil
	}
	s := &dropwatchService{group: cfg.Firewall.NFLogGroup, d: d}
	// Push candidates only exist where the country rule drops.
	if cfg.Engine.GeoMode == "drop" {
		res, err := engine.NewDNSResolver(cfg.Push.Resolver)
		if err != nil {
			return nil, fmt.Errorf("run: push.resolver: %w", err)
		}
		s.prob = dropwatch.NewProbation(dropwatch.ProbationOptions{
			Policy: probationPolicy(cfg),
			// Push parameters make a candidate only for an AOR of this PBX
			// (PJSIPShowAors, refreshed by Run); until the first answer,
			// any AOR passes (the once-a-day and hourly bounds hold).
			AORExists: s.aors.exists,
			Resolver:  fcrdns{res},
			Gate:      probationGate{d},
			Banner:    engineBanner{d.eng},
			Learner:   learner{d: d},
			Log:       d.log,
		})
	}
	s.w = dropwatch.New(dropwatch.Options{
		Country:   d.country,
		Store:     d.store,
		Probation: s.prob,
		Retention: cfg.Engine.EventRetention.D(),
		Log:       d.log,
	})
	if err := d.met.Register(s.w.Collectors()...); err != nil {
		d.log.Warn("run: dropwatch metrics not exported", "err", err)
	}
	return s, nil
}

// probationPolicy is push.* as the probation takes it.
func probationPolicy(cfg *config.Config) dropwatch.Policy {
	uas := make([]*regexp.Regexp, 0, len(cfg.Push.UserAgents))
	for _, r := range cfg.Push.UserAgents {
		if r.Regexp != nil {
			uas = append(uas, r.Regexp)
		}
	}
	return dropwatch.Policy{UserAgents: uas, Domains: cfg.Push.Domains, Duration: cfg.Push.Probation.D(), MaxPerHour: cfg.Push.MaxProbations}
}

// reload applies a reloaded config's push.* to the probation (SIGHUP).
func (s *dropwatchService) reload(cfg *config.Config) {
	if s != nil && s.prob != nil {
		s.prob.SetPolicy(probationPolicy(cfg))
	}
}

// Run reads the NFLOG group in the daemon's namespace until ctx ends. A
// failure of the reader is logged, never fatal: bans and allows do not
// depend on it.
func (s *dropwatchService) Run(ctx context.Context) error {
	s.d.log.Info("run: reading what the firewall drops", "nflog_group", s.group, "probation", s.prob != nil)
	if s.prob != nil && s.d.amiC != nil {
		go s.aors.follow(ctx, s.d.amiC, s.d.log)
	}
	if err := s.w.Run(ctx, nflog.Options{Group: s.group, Log: s.d.log}); err != nil && ctx.Err() == nil {
		s.d.log.Error("run: dropped packets are not visible; the firewall still drops them", "err", err)
	}
	return nil
}

// securityEvent tells the probation what a source on probation did.
func (s *dropwatchService) securityEvent(ctx context.Context, ev *ami.SecurityEvent) {
	if s == nil || s.prob == nil || ev.Service == "AMI" {
		return
	}
	a := ev.Remote.AddrPort.Addr()
	if !a.IsValid() || !s.prob.OnProbation(a) {
		return
	}
	// The outcome writes the state DB and the kernel (milliseconds): it runs
	// off the AMI path, which must never wait. Only an address on
	// probation gets here (at most push.max_probations an hour), and the
	// probation is taken once, so repeated events act once.
	switch k := activity.Classify(ev); {
	case k == activity.KindAuthOK:
		account := ev.AccountID
		go s.prob.AuthSucceeded(ctx, a, account)
	case k.IsFailure():
		what := ev.Type
		go s.prob.AuthFailed(ctx, a, what)
	}
}

// country is a source's country: its list's, else the country database's.
func (d *daemon) country(a netip.Addr) string {
	if cc := d.geo.ListCountry(a); cc != "" {
		return cc
	}
	if cc := d.geo.MMDBCountry(a); cc != "?" {
		return cc
	}
	return ""
}

// fcrdns is the forward-confirmed PTR check, as the engine's push learner
// does it: a PTR name counts only if its own A/AAAA records hold a.
type fcrdns struct{ r engine.Resolver }

func (f fcrdns) ConfirmedName(ctx context.Context, a netip.Addr) (string, error) {
	names, err := f.r.LookupPTR(ctx, a)
	if err != nil {
		return "", err
	}
	for i, n := range names {
		if i == 4 {
			break // an attacker's zone may list many names; each costs a query
		}
		addrs, err := f.r.LookupAddrs(ctx, n)
		if err != nil {
			continue
		}
		for _, x := range addrs {
			if x.Unmap() == a.Unmap() {
				return strings.ToLower(strings.TrimSuffix(n, ".")), nil
			}
		}
	}
	return "", nil
}

// probationGate admits a probation as an entry of firewall.SetProbation,
// which lets the address reach the UDP SIP ports only (never RTP) and
// expires in the kernel by itself, so the admission ends even if sipsentry
// dies. The admissions are the desired content of that set (drift repair)
// and are listed by `sipsentry allows` while they last.
type probationGate struct{ d *daemon }

// admission is one probation in the kernel set.
type admission struct{ until time.Time }

func hostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

func (g probationGate) AdmitSIP(ctx context.Context, a netip.Addr, d time.Duration) error {
	a = a.Unmap()
	// In the desired state before the kernel, so a verify pass between the
	// two never removes it.
	g.d.probationsMu.Lock()
	g.d.probations[a] = admission{until: time.Now().Add(d)}
	g.d.probationsMu.Unlock()
	err := g.d.fw.Add(ctx, firewall.SetProbation, firewall.Entry{Prefix: hostPrefix(a), Timeout: d, Comment: "sipsentry: push probation"})
	if err != nil {
		g.forget(a)
	}
	return err
}

func (g probationGate) Revoke(ctx context.Context, a netip.Addr) error {
	a = a.Unmap()
	g.forget(a)
	return g.d.fw.Delete(ctx, firewall.SetProbation, hostPrefix(a))
}

func (g probationGate) forget(a netip.Addr) {
	g.d.probationsMu.Lock()
	delete(g.d.probations, a)
	g.d.probationsMu.Unlock()
}

// probationEntries are the running admissions (the desired content of
// firewall.SetProbation); expired ones are forgotten.
func (d *daemon) probationEntries(now time.Time) []firewall.Entry {
	d.probationsMu.Lock()
	defer d.probationsMu.Unlock()
	out := make([]firewall.Entry, 0, len(d.probations))
	for a, ad := range d.probations {
		left := ad.until.Sub(now)
		if left <= 0 {
			delete(d.probations, a)
			continue
		}
		out = append(out, firewall.Entry{Prefix: hostPrefix(a), Timeout: left, Comment: "sipsentry: push probation"})
	}
	return out
}

// learner learns a push server through the engine's LearnPush: the allow
// set for push.learn_ttl, the engine's allow book (drift repair and
// `sipsentry allows` know it) and an allows row with the evidence.
type learner struct{ d *daemon }

func (l learner) Learn(ctx context.Context, a netip.Addr, ev state.PushEvidence) error {
	return l.d.eng.LearnPush(ctx, a, ev)
}

// engineBanner hands a probation's failure to the engine, which decides
// (never-ban list, escalation, enforcement) as for any ban.
type engineBanner struct{ e *engine.Engine }

func (b engineBanner) Ban(ctx context.Context, a netip.Addr, reason string) {
	_ = b.e.BanFor(ctx, a, reason) // the engine logs and counts refusals
}

// aorSet is the PBX's AOR names as PJSIPShowAors lists them. Until the
// first answer it knows none and lets every name pass.
type aorSet struct {
	names atomic.Pointer[map[string]struct{}]
}

// aorRefresh: AORs change when the admin edits pjsip.conf, rarely.
const aorRefresh = 5 * time.Minute

func (s *aorSet) exists(user string) bool {
	m := s.names.Load()
	if m == nil {
		return true
	}
	_, ok := (*m)[user]
	return ok
}

// listActioner is the AMI client's list action (*ami.Client).
type listActioner interface {
	ListAction(ctx context.Context, m ami.Message) ([]ami.Message, error)
}

// refresh asks Asterisk for its AORs.
func (s *aorSet) refresh(ctx context.Context, c listActioner) error {
	items, err := c.ListAction(ctx, ami.Message{Headers: []ami.Header{{Key: "Action", Value: "PJSIPShowAors"}}})
	if err != nil {
		return err
	}
	m := make(map[string]struct{}, len(items))
	for _, it := range items {
		if it.Get("Event") == "AorList" {
			if n := it.Get("ObjectName"); n != "" {
				m[n] = struct{}{}
			}
		}
	}
	s.names.Store(&m)
	return nil
}

// follow refreshes the set every aorRefresh (sooner while AMI is down).
func (s *aorSet) follow(ctx context.Context, c listActioner, log *slog.Logger) {
	wait := 2 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := s.refresh(rctx, c)
		cancel()
		if err != nil {
			log.Debug("run: dropwatch: PJSIPShowAors failed; push parameters keep counting for any AOR", "err", err)
			wait = 30 * time.Second
			continue
		}
		wait = aorRefresh
	}
}
