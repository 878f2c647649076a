// Package engine turns typed AMI security events into decisions: per-address
// windows (fast, slow scan, user enumeration, unanswered challenges, kept by
// engine/failmem), known addresses that forged UDP failures cannot ban,
// injection bans, geo strictness, escalation for repeat offenders, and
// push-server learning.
//
// Handle is the hot path: it touches memory only (the failure memory's
// fixed-size record and the report's per-source aggregate) and calls the
// firewall only when it bans. Database writes, contact look-ups, DNS,
// conntrack and ARI hang-ups run in the background goroutines of Run.
//
// The engine is also the one truth for the kernel's ban and allow sets:
// Entries is their desired content (the firewall's verifier repairs the
// kernel from it), and operators change them only through BanManual,
// Unban, AllowManual and Disallow, with a daemon or without one
// (OpenOffline). Its jobs have rooms of their own, one file each: the
// decision table (sources.go), the ban book (banbook.go), the allow book
// (allowbook.go), push learning (push.go), persistence (persist.go) and
// post-ban work (postban.go).
//
// It must never ban an address taken from an attacker-controlled field (only
// SecurityEvent.Remote, the true source), never ban what the admin or the
// host needs (static allows, learned push servers, loopback, own addresses,
// the AMI peer), and never let a forged or injected event teach it a push
// server.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/engine/failmem"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// GeoChecker says whether an address is in an allowed country (*geo.Geo).
type GeoChecker interface {
	Allowed(a netip.Addr) bool
}

// ContactLister lists PJSIP contacts (*ami.Client).
type ContactLister interface {
	PJSIPShowContacts(ctx context.Context) ([]ami.Contact, error)
}

// Resolver is the DNS the push learner uses (see NewDNSResolver).
type Resolver interface {
	// LookupPTR returns the PTR names of a (without trailing dot).
	LookupPTR(ctx context.Context, a netip.Addr) ([]string, error)
	// LookupAddrs returns host's A and AAAA addresses.
	LookupAddrs(ctx context.Context, host string) ([]netip.Addr, error)
}

// Deps are the engine's collaborators. Firewall is required; the rest may be
// nil: no Store means nothing is persisted, no Geo means every address counts
// as allowed (no strict bans, no push learning), no Contacts means push
// learning relies on DNS evidence only, no Resolver means one is built from
// push.resolver.
type Deps struct {
	Firewall firewall.Backend
	Geo      GeoChecker
	Store    *state.Store
	Contacts ContactLister
	Resolver Resolver
	// Hangup ends live calls from a banned address (ARI); optional.
	Hangup func(ctx context.Context, a netip.Addr) error
	Logger *slog.Logger
	// Now is the clock for windows and ban times; default time.Now.
	Now func() time.Time
	// LocalReason says why a is one of the host's own addresses, or a
	// network or broadcast address of one of its subnets ("" if neither);
	// such addresses are never banned. It is asked at every ban, so a
	// watcher of the host's addresses (netlink) keeps it current. nil: a
	// fixed list, HostAddrs or else the interface addresses at New.
	LocalReason func(netip.Addr) string
	// HostAddrs are the host's own addresses when LocalReason is nil; nil
	// means net.InterfaceAddrs (with their subnets' network and broadcast
	// addresses) at New.
	HostAddrs []netip.Addr
	// OnDecision, if set, is called after every decision (metrics, replay
	// output). It must not block.
	OnDecision func(Decision)
	// ContactRetry is the wait between PJSIPShowContacts attempts when the
	// contact is not yet there (Asterisk adds it after the auth); default
	// 300ms, 1s.
	ContactRetry []time.Duration
}

// Decision kinds.
const (
	DecisionBan      = "ban"       // added to the kernel ban set
	DecisionWouldBan = "would_ban" // firewall.mode monitor: recorded only
	DecisionRefused  = "refused"   // a ban that was not made (never-ban list, set full, firewall error)
	DecisionLearned  = "learned"   // push server learned (allow set)
	DecisionFlagged  = "flagged"   // foreign login not learned
	DecisionSeeded   = "seeded"    // push host from DNS put in the allow set
	DecisionUnban    = "unban"
)

// Decision is one thing the engine did or declined to do.
type Decision struct {
	Time     time.Time     `json:"time"`
	Kind     string        `json:"kind"`
	Addr     netip.Addr    `json:"addr"`
	Reason   string        `json:"reason"`
	Duration time.Duration `json:"duration,omitempty"` // ban or allow timeout
	Offence  int           `json:"offence,omitempty"`
	// Latency is Handle's start to the firewall call's return (bans only).
	Latency time.Duration `json:"latency,omitempty"`
	Err     string        `json:"error,omitempty"`
}

// Status is the engine at a glance (`sipsentry status`, metrics).
type Status struct {
	GeoMode       string            `json:"geo_mode"`
	Enforce       bool              `json:"enforce"`
	Sources       int               `json:"sources"`        // aggregates in memory
	ActiveBans    int               `json:"active_bans"`    // in the kernel set (as far as the engine knows)
	WouldBans     int               `json:"would_bans"`     // monitor-mode decisions still "active"
	LearnedAllows int               `json:"learned_allows"` // learned + seeded push entries
	Events        uint64            `json:"events"`
	Malformed     uint64            `json:"malformed"` // events without a usable source
	ByKind        map[string]uint64 `json:"by_kind"`
	Decisions     map[string]uint64 `json:"decisions"`
	Evicted       uint64            `json:"evicted"`
	DroppedWrites uint64            `json:"dropped_writes"`      // event-log rows not written (flood)
	DroppedSource uint64            `json:"dropped_source_rows"` // source-aggregate rows not written (writer far behind)
	SourceRows    SourceRowStats    `json:"source_rows"`         // source rows waiting for the writer under the row budget (rowbudget.go)
	DroppedPush   uint64            `json:"dropped_push"`        // push candidates not examined (queue full)
	FullRefusals  uint64            `json:"full_refusals"`       // bans refused because the ban set was full
	LastEvent     time.Time         `json:"last_event"`
	Recent        []Decision        `json:"recent"`

	// FailureMemory is the failure memory's size (engine/failmem): the
	// addresses it tracks, what it evicted, its slots' bytes.
	FailureMemory failmem.Stats `json:"failure_memory"`
}

const (
	maxPendingEvents = 1 << 15 // event-log rows waiting for the writer (~4 MiB)
	maxPendingSrc    = 1 << 14 // evicted-source rows waiting for the writer (~4 MiB)
	recentDecisions  = 32
	flushInterval    = 250 * time.Millisecond // a commit costs the writer more than its rows under a flood; a ban is in the kernel at once, in the DB within this
	sweepInterval    = 5 * time.Second
	pruneInterval    = 10 * time.Second // often: under a flood the row cap, not the age, is what bounds the file
	maxEventLogRows  = 1_000_000
	refreshEvery     = time.Minute // at most one allow refresh per learned address per minute
	reflagEvery      = time.Hour   // a flagged foreign login is examined again at most hourly
)

// addrKey is an address as a map key: 16 pointer-free bytes instead of
// netip.Addr's 24 with a zone pointer, so the ban and source maps (100k+
// entries under attack) are smaller and the GC does not scan them. Inputs
// are already unmapped and zone-free (ami.ParseAddress, Ban, Unban,
// Restore), so keying by As16 merges nothing that was distinct before.
type addrKey [16]byte

func keyOf(a netip.Addr) addrKey { return a.Unmap().As16() }

// addr turns k back into the (unmapped) address it was made from.
func (k addrKey) addr() netip.Addr { return netip.AddrFrom16(k).Unmap() }

// Engine is safe for concurrent use. Its jobs each have a room of their
// own, with a lock named for what it guards; where two are held at once the
// order is sources, bans, allows (writer, decisions and the in-flight count
// are leaves).
type Engine struct {
	d   Deps
	log *slog.Logger
	now func() time.Time
	fw  firewall.Backend
	// current holds the settings; Reload swaps it.
	current atomic.Pointer[settings]

	sources   sourceTable // per-source aggregates for the report (bounded, evictable)
	bans      banBook     // bans, escalation, the desired ban set
	allows    allowBook   // never-ban reasons and learned push allows
	push      pushLearner // push-server learning: queue, DNS, contacts
	writer    stateWriter // persistence: rows waiting for the next batch
	post      postBanWork // after a ban: flows, conntrack walk, hang-ups
	work      inFlight    // push examinations and post-ban jobs not yet done (Sync)
	decisions decisionLog // counts and recent decisions (status)

	// failures decides: what counts toward a ban, per address
	// (engine/failmem); it never forgets a source on its way to a ban.
	failures *failmem.Memory
	applier  lowApplier // the state writer's transactions at low CPU priority (flusher.go)

	events, malformed, droppedWrites, droppedPush atomic.Uint64
	fullRefusals, fullUnlogged                    atomic.Uint64
	fullLogged                                    atomic.Int64 // UnixNano of the last set-full log line
	running                                       atomic.Bool
}

// New checks o and builds an engine; it touches neither kernel nor DB
// (Start does, or OpenOffline for a one-shot command).
func New(o Options, d Deps) (*Engine, error) {
	if d.Firewall == nil {
		return nil, errors.New("engine: no firewall backend (use firewall/dryrun for a dry run)")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.ContactRetry == nil {
		d.ContactRetry = []time.Duration{300 * time.Millisecond, time.Second}
	}
	p, err := newSettings(o)
	if err != nil {
		return nil, err
	}
	if d.Resolver == nil {
		r, err := NewDNSResolver(o.Push.Resolver)
		if err != nil {
			d.Logger.Warn("engine: no DNS resolver; push learning will use User-Agent evidence only and push hosts are not seeded", "err", err)
		} else {
			d.Resolver = r
		}
	}
	e := &Engine{d: d, log: d.Logger, now: d.Now, fw: d.Firewall}
	e.current.Store(p)
	e.applier.init()
	// Static allows and learned push servers need no "known" status: they
	// are never banned at all (neverBan refuses, with the reason logged).
	if e.failures, err = failmem.New(p.failures); err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	e.sources.init()
	e.bans.init()
	e.allows.init()
	e.push.init()
	e.post.init()
	e.work.init()
	e.decisions.init()
	if d.LocalReason == nil {
		if d.HostAddrs != nil {
			e.d.LocalReason = fixedLocal(d.HostAddrs, nil)
		} else {
			e.d.LocalReason = interfaceLocal(e.log)
		}
	}
	for _, peer := range o.AMIPeers {
		if peer.IsValid() {
			e.allows.never[peer.Unmap()] = "AMI peer (Asterisk)"
		}
	}
	return e, nil
}

// interfaceLocal is the default LocalReason: the interface addresses at
// New and their subnets' network and broadcast addresses.
func interfaceLocal(log *slog.Logger) func(netip.Addr) string {
	ifs, err := net.InterfaceAddrs()
	if err != nil {
		log.Warn("engine: cannot list the host's addresses; they are not protected from bans", "err", err)
	}
	var addrs []netip.Addr
	var nets []netip.Prefix
	for _, ia := range ifs {
		if n, ok := ia.(*net.IPNet); ok {
			if a, ok := netip.AddrFromSlice(n.IP); ok {
				ones, _ := n.Mask.Size()
				a = a.Unmap()
				addrs = append(addrs, a)
				if p, err := a.Prefix(ones); err == nil {
					nets = append(nets, p)
				}
			}
		}
	}
	return fixedLocal(addrs, nets)
}

// fixedLocal is a LocalReason for a fixed list of the host's addresses
// and subnets.
func fixedLocal(addrs []netip.Addr, subnets []netip.Prefix) func(netip.Addr) string {
	why := map[netip.Addr]string{}
	for _, p := range subnets {
		p = p.Masked()
		if nw, bcast, ok := subnetEnds(p); ok {
			why[nw] = "network address of the host's subnet " + p.String()
			if bcast.IsValid() {
				why[bcast] = "broadcast address of the host's subnet " + p.String()
			}
		}
	}
	for _, a := range addrs {
		why[a.Unmap()] = "host's own address"
	}
	return func(a netip.Addr) string { return why[a] }
}

// subnetEnds returns p's network address and, for IPv4, its broadcast
// address; ok is false for subnets too small to have them (/31, /32, /127,
// /128), where both ends are hosts.
func subnetEnds(p netip.Prefix) (network, broadcast netip.Addr, ok bool) {
	p = p.Masked()
	bits := p.Addr().BitLen()
	if p.Bits() >= bits-1 {
		return netip.Addr{}, netip.Addr{}, false
	}
	network = p.Addr()
	if !network.Is4() {
		return network, netip.Addr{}, true // the subnet-router anycast address
	}
	b := network.As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return network, netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// opts returns the settings in force.
func (e *Engine) opts() *settings { return e.current.Load() }

// SetAMIPeer adds the address the AMI connection actually reached (e.g. a
// resolved host name) to the never-ban list.
func (e *Engine) SetAMIPeer(a netip.Addr) {
	if !a.IsValid() {
		return
	}
	e.allows.allowsMu.Lock()
	e.allows.never[a.Unmap()] = "AMI peer (Asterisk)"
	e.allows.allowsMu.Unlock()
}

// Snapshot reports counters and recent decisions.
func (e *Engine) Snapshot() Status {
	o := e.opts()
	st := Status{GeoMode: string(o.GeoMode), Enforce: o.Enforce, ByKind: map[string]uint64{}, Decisions: map[string]uint64{}}
	e.sources.tableMu.Lock()
	st.Sources = len(e.sources.byAddr)
	for k, n := range e.sources.kinds {
		if n > 0 {
			st.ByKind[activity.Kind(k).String()] = n
		}
	}
	st.LastEvent = e.sources.lastEvent
	e.sources.tableMu.Unlock()
	now := e.now().UnixNano()
	st.ActiveBans, st.WouldBans = e.bans.counts(now)
	st.LearnedAllows = e.allows.countPush(now)
	st.Decisions, st.Recent = e.decisions.snapshot()
	st.Events = e.events.Load()
	st.Malformed = e.malformed.Load()
	st.Evicted = e.sources.evicted.Load()
	st.FailureMemory = e.failures.Stats()
	st.DroppedWrites = e.droppedWrites.Load()
	st.DroppedSource = e.sources.droppedRows.Load()
	st.SourceRows = e.sources.rowStats(e.now())
	st.DroppedPush = e.droppedPush.Load()
	st.FullRefusals = e.fullRefusals.Load()
	return st
}

// decisionLog counts decisions and keeps the last few for `status`.
type decisionLog struct {
	countsMu sync.Mutex // guards counts and recent
	counts   map[string]uint64
	recent   []Decision
}

func (l *decisionLog) init() { l.counts = map[string]uint64{} }

func (l *decisionLog) add(d Decision) {
	l.countsMu.Lock()
	defer l.countsMu.Unlock()
	l.counts[d.Kind]++
	if len(l.recent) >= recentDecisions {
		copy(l.recent, l.recent[1:])
		l.recent = l.recent[:len(l.recent)-1]
	}
	l.recent = append(l.recent, d)
}

func (l *decisionLog) snapshot() (map[string]uint64, []Decision) {
	l.countsMu.Lock()
	defer l.countsMu.Unlock()
	m := make(map[string]uint64, len(l.counts))
	for k, n := range l.counts {
		m[k] = n
	}
	return m, append([]Decision(nil), l.recent...)
}

func (e *Engine) decide(d Decision) {
	e.decisions.add(d)
	if e.d.OnDecision != nil {
		e.d.OnDecision(d)
	}
}

// prefixOf is the host prefix of a.
func prefixOf(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
