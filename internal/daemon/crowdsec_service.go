package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go4.org/netipx"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipsentry/sipsentry/crowdsec"
	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
)

// crowdsecService shares decisions through a CrowdSec LAPI ([crowdsec]):
// the engine's bans go out through the publisher, the LAPI's decisions come
// in through the consumer into remoteSink. Off unless crowdsec.enabled.
type crowdsecService struct {
	d    *daemon
	pub  *crowdsec.Publisher // nil without machine credentials
	cons *crowdsec.Consumer  // nil without a bouncer key
	sink *remoteSink
}

func newCrowdsecService(d *daemon) (*crowdsecService, error) {
	cs := d.cfg.Crowdsec
	if !cs.Enabled {
		return nil, nil
	}
	c, err := CrowdsecClient(d.cfg, d.version)
	if err != nil {
		return nil, err
	}
	s := &crowdsecService{d: d, sink: &remoteSink{d: d, nets: map[netip.Prefix]remoteNet{}}}
	log := d.log.With("component", "crowdsec")
	if cs.MachineCredentialsFile != "" {
		s.pub = crowdsec.NewPublisher(c, crowdsec.PublisherOptions{Logger: log})
	}
	if cs.BouncerKeyFile != "" {
		s.cons = crowdsec.NewConsumer(c, s.sink, crowdsec.ConsumerOptions{
			PollInterval: cs.PollInterval.D(),
			MaxRangeV4:   cs.MaxRangePrefixV4,
			MaxRangeV6:   cs.MaxRangePrefixV6,
			Refuse:       s.sink.refuse,
			Ours: func(p netip.Prefix, now time.Time) bool {
				return s.pub != nil && p.IsSingleIP() && s.pub.Published(p.Addr(), now)
			},
			Logger: log,
		})
	}
	if err := d.met.Register(s); err != nil {
		log.Warn("crowdsec: metrics not exported", "err", err)
	}
	d.log.Info("crowdsec: sharing decisions", "publish", s.pub != nil, "consume", s.cons != nil,
		"poll_interval", cs.PollInterval.D())
	return s, nil
}

// Run runs the publisher and the consumer until ctx ends.
func (s *crowdsecService) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.pub != nil {
		wg.Go(func() { _ = s.pub.Run(ctx) })
	}
	if s.cons != nil {
		wg.Go(func() { _ = s.cons.Run(ctx) })
	}
	wg.Wait()
	return nil
}

// publish hands a ban decision to the publisher: never a remote decision
// coming back (its reason starts with its crowdsec origin), never a would-ban.
func (s *crowdsecService) publish(dec engine.Decision) {
	if s == nil || s.pub == nil || dec.Kind != engine.DecisionBan || strings.HasPrefix(dec.Reason, engine.RemoteOriginPrefix) {
		return
	}
	b := crowdsec.Ban{Addr: dec.Addr, Reason: dec.Reason, Duration: dec.Duration, Time: dec.Time,
		Accounts: s.d.eng.AccountsOf(dec.Addr)}
	if s.d.geo != nil {
		v := s.d.geo.Lookup(dec.Addr)
		b.Country = v.ListCountry
		if b.Country == "" && v.MMDBCountry != "?" {
			b.Country = v.MMDBCountry
		}
		if v.ASN != 0 {
			b.ASNumber, b.ASName = fmt.Sprint(v.ASN), v.Org
		}
	}
	s.pub.Publish(b)
}

// entries are the ranges the LAPI's decisions put in firewall.SetBanNet:
// the desired content of that set.
func (s *crowdsecService) entries(now time.Time) []firewall.Entry {
	if s == nil {
		return nil
	}
	return s.sink.entries(now)
}

var (
	csPublishedDesc = prometheus.NewDesc("sipsentry_crowdsec_published_total", "Bans sent to the CrowdSec LAPI as alerts.", nil, nil)
	csDroppedDesc   = prometheus.NewDesc("sipsentry_crowdsec_publish_dropped_total", "Bans not published because the queue to the LAPI was full.", nil, nil)
	csFailuresDesc  = prometheus.NewDesc("sipsentry_crowdsec_publish_failures_total", "Failed requests to publish bans (retried with backoff).", nil, nil)
	csPendingDesc   = prometheus.NewDesc("sipsentry_crowdsec_publish_pending", "Bans waiting to be published.", nil, nil)
	csDecisionsDesc = prometheus.NewDesc("sipsentry_crowdsec_decisions_total", "Remote decisions read from the LAPI's stream, by what became of them.", []string{"result"}, nil)
	csPollFailDesc  = prometheus.NewDesc("sipsentry_crowdsec_poll_failures_total", "Failed pulls of the LAPI's decisions stream.", nil, nil)
	csActiveDesc    = prometheus.NewDesc("sipsentry_crowdsec_remote_decisions", "Remote decisions applied and not yet deleted.", nil, nil)
)

// Describe and Collect export the publisher's and consumer's counters.
func (s *crowdsecService) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{csPublishedDesc, csDroppedDesc, csFailuresDesc, csPendingDesc, csDecisionsDesc, csPollFailDesc, csActiveDesc} {
		ch <- d
	}
}

func (s *crowdsecService) Collect(ch chan<- prometheus.Metric) {
	if s.pub != nil {
		st := s.pub.Stats()
		ch <- prometheus.MustNewConstMetric(csPublishedDesc, prometheus.CounterValue, float64(st.Sent))
		ch <- prometheus.MustNewConstMetric(csDroppedDesc, prometheus.CounterValue, float64(st.Dropped))
		ch <- prometheus.MustNewConstMetric(csFailuresDesc, prometheus.CounterValue, float64(st.Failures))
		ch <- prometheus.MustNewConstMetric(csPendingDesc, prometheus.GaugeValue, float64(st.Pending))
	}
	if s.cons != nil {
		st := s.cons.Stats()
		for r, n := range map[string]uint64{"applied": st.Applied, "removed": st.Removed, "refused": st.Refused, "ignored": st.Ignored, "own": st.Own} {
			ch <- prometheus.MustNewConstMetric(csDecisionsDesc, prometheus.CounterValue, float64(n), r)
		}
		ch <- prometheus.MustNewConstMetric(csPollFailDesc, prometheus.CounterValue, float64(st.PollFailures))
		ch <- prometheus.MustNewConstMetric(csActiveDesc, prometheus.GaugeValue, float64(st.Active))
	}
}

// remoteSink applies the LAPI's decisions: a single address becomes an
// engine ban with origin crowdsec:<origin> (so the engine's never-ban
// rules, the DB, `bans` and `sources` know it), a range an entry of
// firewall.SetBanNet.
type remoteSink struct {
	d *daemon
	// netsMu guards nets (the ranges applied) and the allowed-country set
	// cached for refuse.
	netsMu    sync.Mutex
	nets      map[netip.Prefix]remoteNet
	allowed   *netipx.IPSet
	allowedAt time.Time
}

type remoteNet struct {
	until  time.Time
	origin string
}

func (r *remoteSink) AddRemote(ctx context.Context, p netip.Prefix, d time.Duration, origin, scenario string) error {
	if p.IsSingleIP() {
		_, err := r.d.eng.BanRemote(ctx, p.Addr(), d, scenario, origin)
		return err
	}
	if err := r.d.fw.Add(ctx, firewall.SetBanNet, firewall.Entry{Prefix: p, Timeout: d, Comment: origin}); err != nil {
		return err
	}
	r.netsMu.Lock()
	r.nets[p] = remoteNet{until: time.Now().Add(d), origin: origin}
	r.netsMu.Unlock()
	r.d.log.Info("crowdsec: remote range banned", "prefix", p, "for", d, "origin", origin)
	return nil
}

func (r *remoteSink) RemoveRemote(ctx context.Context, p netip.Prefix) error {
	if p.IsSingleIP() {
		_, err := r.d.eng.UnbanRemote(ctx, p.Addr())
		return err
	}
	r.netsMu.Lock()
	delete(r.nets, p)
	r.netsMu.Unlock()
	return r.d.fw.Delete(ctx, firewall.SetBanNet, p)
}

// refuse keeps a remote range off what sipsentry must never ban: the
// engine's allows (static, learned push, manual), the host's and the AMI
// peer's addresses, and the allowed countries' ranges. Single addresses are
// judged by the engine itself (BanRemote).
func (r *remoteSink) refuse(p netip.Prefix) string {
	if p.IsSingleIP() {
		return ""
	}
	now := time.Now()
	for _, al := range r.d.eng.Allows(now) {
		if al.Prefix.Overlaps(p) {
			return fmt.Sprintf("covers the %s allow %s", al.Kind, al.Prefix)
		}
	}
	for _, a := range r.localAddrs() {
		if p.Contains(a) {
			return fmt.Sprintf("covers %s (this host or its Asterisk)", a)
		}
	}
	if r.d.geo != nil && r.overlapsAllowedCountry(p, now) {
		return "covers part of an allowed country's range (geo.allow_countries)"
	}
	return ""
}

func (r *remoteSink) localAddrs() []netip.Addr {
	var out []netip.Addr
	if r.d.hosts != nil {
		for _, p := range r.d.hosts.Prefixes() {
			out = append(out, p.Addr())
		}
	} else if ifs, err := net.InterfaceAddrs(); err == nil {
		for _, ia := range ifs {
			if n, ok := ia.(*net.IPNet); ok {
				if a, ok := netip.AddrFromSlice(n.IP); ok {
					out = append(out, a.Unmap())
				}
			}
		}
	}
	if h, _, err := net.SplitHostPort(r.d.cfg.AMI.Address); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// overlapsAllowedCountry asks a set of the allowed countries' ranges,
// rebuilt at most once a minute (lists change daily).
func (r *remoteSink) overlapsAllowedCountry(p netip.Prefix, now time.Time) bool {
	r.netsMu.Lock()
	defer r.netsMu.Unlock()
	if r.allowed == nil || now.Sub(r.allowedAt) > time.Minute {
		var b netipx.IPSetBuilder
		for _, q := range r.d.geo.AllowedPrefixes() {
			b.AddPrefix(q)
		}
		set, err := b.IPSet()
		if err != nil {
			return true // cannot tell: refuse rather than risk the country
		}
		r.allowed, r.allowedAt = set, now
	}
	return r.allowed.OverlapsPrefix(p)
}

func (r *remoteSink) entries(now time.Time) []firewall.Entry {
	r.netsMu.Lock()
	defer r.netsMu.Unlock()
	out := make([]firewall.Entry, 0, len(r.nets))
	for p, n := range r.nets {
		left := n.until.Sub(now)
		if left <= 0 {
			delete(r.nets, p)
			continue
		}
		out = append(out, firewall.Entry{Prefix: p, Timeout: left, Comment: n.origin})
	}
	return out
}
