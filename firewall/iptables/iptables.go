// Package iptables is the firewall backend built on ipset and iptables /
// ip6tables: per-family ipsets hold the addresses, one chain consults them,
// and jump rules in INPUT send only the protected SIP and RTP ports there.
//
// It must never touch a chain, rule or set it did not create: ownership of
// the chain is shown by a marker rule ("-m comment --comment
// sipsentry-owned") at its top, ownership of a set by its exact type and
// options, and every INPUT rule it adds carries "--comment sipsentry".
// Everything from the caller is validated before the kernel sees it.
//
// Bulk changes go through one `ipset restore` stream fed from Go (no
// shell); single adds at event rate go through a shared netlink handle,
// which measured ~100 times faster than an exec (see the benchmarks).
// Conntrack work has sockets of its own: a walk of the conntrack table
// takes tens of milliseconds and must never hold up a ban add.
//
// Verify (verify.go) reads the sets and the rules by netlink on a socket of
// its own and repairs by netlink batches; BulkLoad (load.go) streams
// entries into a set the same way. nlipset.go and nlrules.go hold the two
// small netlink codecs they need.
package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	goipt "github.com/coreos/go-iptables/iptables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sipsentry/sipsentry/firewall"
)

// Options configure a Backend. The daemon's wiring fills them from the
// [firewall] table; zero values get the defaults noted.
type Options struct {
	// Mode: enforce drops, monitor only logs and counts; default monitor.
	Mode firewall.Mode
	// GeoDrop: the chain's last rule drops (enforce) or logs (monitor)
	// what no set accepted; false lets every country through.
	GeoDrop bool
	// Chain is sipsentry's chain; default "SIPSENTRY".
	Chain string
	// InputPosition is where the first jump goes in INPUT (1-based);
	// past the end appends. Default 1.
	InputPosition int
	// The protected ports: only packets to them are sent to the chain.
	UDPPorts, TCPPorts, RTPPorts []firewall.PortRange
	// BanMaxElem is the ban set's capacity per family; default 1<<20.
	BanMaxElem int
	// NFLogGroup, when not 0, puts a rate-limited NFLOG copy before each
	// DROP so the daemon sees what was refused (dropwatch).
	NFLogGroup uint16
	Log        *slog.Logger
	// Netns, when set, runs every kernel operation (ipset, iptables,
	// netlink) inside that named network namespace (/run/netns/NAME):
	// commands are started from one OS thread locked into it, the netlink
	// socket is opened there. Tests use it; production leaves it empty.
	Netns string
	// IpsetPath is the ipset program; default "ipset" looked up in PATH.
	IpsetPath string
	// SetPrefix prefixes the kernel set names; default "sipsentry-".
	SetPrefix string
}

// Backend implements firewall.Backend with ipset + iptables.
type Backend struct {
	cfg    Options
	log    *slog.Logger
	prefix string
	ipset  string
	run    *runner
	ipt    map[string]*goipt.IPTables // by family: inet, inet6

	nlMu sync.Mutex // guards nl, aconn and abatch: one request at a time on each socket
	// aconn and abatch are the add path's own socket and request buffer
	// (adds at event rate; see nlAdd).
	aconn  *nlConn
	abatch batch
	nl     *netlink.Handle // ipset requests (adds at event rate)
	// Conntrack sockets, apart from nl so that a table walk (DropFlowsOf:
	// 10-30 ms) never delays an ipset add, and apart from each other so
	// that a single-flow delete (DropFlow) does not wait for a walk.
	ctMu     sync.Mutex
	ctConn   *nlConn // single-flow conntrack deletes (ctdelete.go); guarded by ctMu
	walkMu   sync.Mutex
	ctWalker *netlink.Handle // conntrack table walks

	// mu: Up, Down and Prepare hold it exclusively; set operations share it
	// and serialize per set (setMu), so an Add never lands in a set being
	// swapped out, while a ban is not held up by an allow-cc reload.
	mu    sync.RWMutex
	setMu map[firewall.Set]*sync.Mutex
	// verified: the set's kernel sets were seen to be sipsentry's (by Up,
	// Prepare or a first check), so netlink adds may go straight in.
	verified map[firewall.Set]*atomic.Bool

	// verifyMu guards what Verify keeps between checks: its own netlink
	// socket (dumps of 100k members must not hold up the ban path's) and
	// the rules' fingerprints as last seen right. Taken after mu.
	verifyMu sync.Mutex
	vconn    *nlConn
	golden   map[string]*goldenRules // by family
	vbufs    verifyBufs

	statMu sync.Mutex // guards sconn, SetInfos' own netlink socket
	sconn  *nlConn
}

var (
	_ firewall.Backend     = (*Backend)(nil)
	_ firewall.Preparer    = (*Backend)(nil)
	_ firewall.FlowDropper = (*Backend)(nil)

	_ firewall.BulkFlowDropper = (*Backend)(nil)
)

const (
	ownerComment  = "sipsentry-owned" // marker rule at the top of the chain
	jumpComment   = "sipsentry"       // on every INPUT rule sipsentry adds
	logDropPrefix = "sipsentry-would-drop: "
	logBanPrefix  = "sipsentry-would-ban: "
	table         = "filter"
)

var families = []string{"inet", "inet6"}

// New builds a backend. It probes for the ipset and iptables programs,
// CAP_NET_ADMIN and the kernel's ipset support, and returns one error
// wrapping firewall.ErrUnavailable if any is missing.
func New(o Options) (*Backend, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.SetPrefix == "" {
		o.SetPrefix = "sipsentry-"
	}
	if o.IpsetPath == "" {
		o.IpsetPath = "ipset"
	}
	if o.Chain == "" {
		o.Chain = "SIPSENTRY"
	}
	if o.InputPosition < 1 {
		o.InputPosition = 1
	}
	if o.BanMaxElem < 1 {
		o.BanMaxElem = 1 << 20
	}
	switch o.Mode {
	case "":
		o.Mode = firewall.ModeMonitor
	case firewall.ModeMonitor, firewall.ModeEnforce:
	default:
		return nil, fmt.Errorf("iptables: mode %q: want %q or %q", o.Mode, firewall.ModeEnforce, firewall.ModeMonitor)
	}
	if len(o.SetPrefix)+len("allow-cc-v6-tmp") > 31 {
		return nil, fmt.Errorf("iptables: set prefix %q too long: ipset names are at most 31 bytes", o.SetPrefix)
	}
	path, err := exec.LookPath(o.IpsetPath)
	if err != nil {
		return nil, fmt.Errorf("%w: the ipset program is missing (%v): install it (apt install ipset)", firewall.ErrUnavailable, err)
	}
	b := &Backend{cfg: o, log: o.Log, prefix: o.SetPrefix, ipset: path, ipt: map[string]*goipt.IPTables{},
		setMu: map[firewall.Set]*sync.Mutex{}, verified: map[firewall.Set]*atomic.Bool{}, golden: map[string]*goldenRules{}}
	for _, s := range firewall.Sets {
		b.setMu[s] = &sync.Mutex{}
		b.verified[s] = &atomic.Bool{}
	}
	if o.Netns != "" {
		r, err := startRunner(o.Netns)
		if err != nil {
			return nil, err
		}
		b.run = r
	}
	var probeErr error
	b.run.do(func() {
		for _, fam := range families {
			proto := goipt.ProtocolIPv4
			if fam == "inet6" {
				proto = goipt.ProtocolIPv6
			}
			ipt, err := goipt.New(goipt.IPFamily(proto), goipt.Timeout(10))
			if err != nil {
				probeErr = fmt.Errorf("%w: %s is missing or broken (%v): install iptables (apt install iptables)",
					firewall.ErrUnavailable, map[string]string{"inet": "iptables", "inet6": "ip6tables"}[fam], err)
				return
			}
			b.ipt[fam] = ipt
		}
		// The socket opens in the namespace of this thread (the runner's).
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			probeErr = fmt.Errorf("%w: netlink netfilter socket: %v", firewall.ErrUnavailable, err)
			return
		}
		b.nl = h
		if b.ctConn, err = openNLRequestConn(); err != nil {
			probeErr = fmt.Errorf("%w: netlink netfilter socket: %v", firewall.ErrUnavailable, err)
			return
		}
		w, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			probeErr = fmt.Errorf("%w: netlink netfilter socket: %v", firewall.ErrUnavailable, err)
			return
		}
		b.ctWalker = w
		if b.vconn, err = openNLConn(); err != nil {
			probeErr = fmt.Errorf("%w: netlink netfilter socket: %v", firewall.ErrUnavailable, err)
			return
		}
		if b.aconn, err = openNLRequestConn(); err != nil {
			probeErr = fmt.Errorf("%w: netlink netfilter socket: %v", firewall.ErrUnavailable, err)
			return
		}
	})
	if probeErr == nil {
		probeErr = b.probeKernel()
	}
	if probeErr != nil {
		b.Close()
		return nil, probeErr
	}
	return b, nil
}

// probeKernel asks the kernel's ipset for its protocol version: it fails
// exactly when CAP_NET_ADMIN or the ip_set module is missing.
func (b *Backend) probeKernel() error {
	b.nlMu.Lock()
	_, _, err := b.nl.IpsetProtocol()
	b.nlMu.Unlock()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return fmt.Errorf("%w: the kernel refused ipset access (%v): run as root or grant CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN)", firewall.ErrUnavailable, err)
	default:
		return fmt.Errorf("%w: the kernel has no usable ipset support (%v): load the modules (modprobe ip_set ip_set_hash_ip ip_set_hash_net xt_set nf_conntrack_netlink)", firewall.ErrUnavailable, err)
	}
}

func (b *Backend) Close() error {
	if b.nl != nil {
		b.nl.Close()
		b.nl = nil
	}
	b.ctMu.Lock()
	if b.ctConn != nil {
		b.ctConn.close()
		b.ctConn = nil
	}
	b.ctMu.Unlock()
	if b.ctWalker != nil {
		b.ctWalker.Close()
		b.ctWalker = nil
	}
	if b.vconn != nil {
		b.vconn.close()
		b.vconn = nil
	}
	b.nlMu.Lock()
	if b.aconn != nil {
		b.aconn.close()
		b.aconn = nil
	}
	b.nlMu.Unlock()
	b.statMu.Lock()
	if b.sconn != nil {
		b.sconn.close()
		b.sconn = nil
	}
	b.statMu.Unlock()
	if b.run != nil {
		b.run.stop()
		b.run = nil
	}
	return nil
}

// runner runs functions on one OS thread locked into a network namespace.
// A nil runner runs them in place.
type runner struct {
	ch chan func()
}

func startRunner(name string) (*runner, error) {
	r := &runner{ch: make(chan func())}
	ready := make(chan error)
	go func() {
		// Never unlocked: the thread leaves with this goroutine, so no other
		// goroutine ever runs in the namespace by accident.
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			ready <- fmt.Errorf("iptables: network namespace %q: %w", name, err)
			return
		}
		err = netns.Set(h)
		h.Close()
		if err != nil {
			ready <- fmt.Errorf("iptables: enter network namespace %q: %w", name, err)
			return
		}
		ready <- nil
		for f := range r.ch {
			f()
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return r, nil
}

func (r *runner) do(f func()) {
	if r == nil {
		f()
		return
	}
	done := make(chan struct{})
	r.ch <- func() { f(); close(done) }
	<-done
}

func (r *runner) stop() { close(r.ch) }

// ---- names and specs

func suffix(fam string) string {
	if fam == "inet" {
		return "-v4"
	}
	return "-v6"
}

func famOf(p netip.Prefix) string { return firewall.Family(p.Addr()) }

func (b *Backend) spec(set firewall.Set, fam string) setSpec {
	s := setSpec{set: set, name: b.prefix + string(set) + suffix(fam), family: fam, comment: true, maxElem: 65536}
	switch set {
	case firewall.SetAllowCountry:
		s.typ = "hash:net"
	case firewall.SetAllow:
		s.typ, s.timeout = "hash:net", true
	case firewall.SetBan:
		s.typ, s.timeout, s.maxElem = "hash:ip", true, b.cfg.BanMaxElem
	case firewall.SetBanNet:
		s.typ, s.timeout = "hash:net", true
	case firewall.SetProbation:
		s.typ, s.timeout = "hash:ip", true
	}
	return s
}

func (b *Backend) specs() []setSpec {
	var out []setSpec
	for _, fam := range families {
		for _, s := range firewall.Sets {
			out = append(out, b.spec(s, fam))
		}
	}
	return out
}

func tmpName(name string) string { return name + "-tmp" }

// ---- ipset exec

// ipsetCmd runs ipset with args (and stdin) and returns stdout. Errors keep
// the command and ipset's own message.
func (b *Backend) ipsetCmd(ctx context.Context, stdin []byte, args ...string) (string, error) {
	var out, errb bytes.Buffer
	var err error
	b.run.do(func() {
		cmd := exec.CommandContext(ctx, b.ipset, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		cmd.Stdout, cmd.Stderr = &out, &errb
		err = cmd.Run()
	})
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		// ipset's CLI says a set is full only in words; there is no code.
		if strings.Contains(msg, "Hash is full") {
			return "", fmt.Errorf("%w: ipset %s: %s", firewall.ErrSetFull, args[0], msg)
		}
		return "", fmt.Errorf("iptables: ipset %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out.String(), nil
}

func (b *Backend) restore(ctx context.Context, script string) error {
	if script == "" {
		return nil
	}
	_, err := b.ipsetCmd(ctx, []byte(script), "-exist", "restore")
	return err
}

func (b *Backend) listSets(ctx context.Context) (map[string]setHeader, error) {
	out, err := b.ipsetCmd(ctx, nil, "list", "-t")
	if err != nil {
		return nil, err
	}
	return parseListTerse(out)
}

// ---- ownership

type inventory struct {
	sets   map[string]setHeader
	chains map[string]chainState // by family
}

type chainState struct {
	exists bool
	ours   bool
	rules  []string // "-A CHAIN ..." lines
}

func (b *Backend) chainState(fam string) (chainState, error) {
	var st chainState
	var err error
	b.run.do(func() {
		ipt := b.ipt[fam]
		var ok bool
		ok, err = ipt.ChainExists(table, b.cfg.Chain)
		if err != nil || !ok {
			return
		}
		st.exists = true
		var lines []string
		lines, err = ipt.List(table, b.cfg.Chain)
		if err != nil {
			return
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "-A ") {
				st.rules = append(st.rules, l)
			}
		}
		st.ours = len(st.rules) > 0 && st.rules[0] == b.markerLine()
	})
	if err != nil {
		return st, fmt.Errorf("iptables: inspect chain %s (%s): %w", b.cfg.Chain, fam, err)
	}
	return st, nil
}

func (b *Backend) inventory(ctx context.Context) (inventory, error) {
	inv := inventory{chains: map[string]chainState{}}
	var err error
	if inv.sets, err = b.listSets(ctx); err != nil {
		return inv, err
	}
	for _, fam := range families {
		if inv.chains[fam], err = b.chainState(fam); err != nil {
			return inv, err
		}
	}
	return inv, nil
}

// foreign lists every object of sipsentry's names that is not sipsentry's.
func (b *Backend) foreign(inv inventory) error {
	var errs []error
	for _, s := range b.specs() {
		if h, ok := inv.sets[s.name]; ok {
			if err := h.matches(s); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, fam := range families {
		if err := b.chainNotOurs(fam, inv.chains[fam]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func iptName(fam string) string {
	if fam == "inet6" {
		return "ip6tables"
	}
	return "iptables"
}

// ---- rules

// rule is an iptables rule spec and the line `iptables -S` prints for it.
type rule struct {
	args []string
	line string
}

func mkRule(chain string, args ...string) rule {
	var b strings.Builder
	b.WriteString("-A ")
	b.WriteString(chain)
	for i, a := range args {
		b.WriteByte(' ')
		// iptables -S quotes the log prefix (and any word with a space).
		if (i > 0 && args[i-1] == "--log-prefix") || strings.ContainsAny(a, " \t") {
			b.WriteString(`"` + a + `"`)
		} else {
			b.WriteString(a)
		}
	}
	return rule{args: args, line: b.String()}
}

func (b *Backend) markerLine() string {
	return mkRule(b.cfg.Chain, "-m", "comment", "--comment", ownerComment).line
}

func (b *Backend) chainRules(fam string) []rule {
	return b.chainRulesFor(fam, b.cfg.Mode, b.cfg.GeoDrop)
}

// chainRulesFor is the chain's content for a mode and geo drop setting.
func (b *Backend) chainRulesFor(fam string, mode firewall.Mode, geoDrop bool) []rule {
	c := b.cfg.Chain
	name := func(s firewall.Set) string { return b.spec(s, fam).name }
	enforce := mode == firewall.ModeEnforce
	// sipsentry only ever drops. What it lets through goes back to INPUT
	// (RETURN, not ACCEPT), so the rules below its jump — fail2ban's, the
	// admin's, a default policy — still see every packet it does not drop.
	rs := []rule{
		mkRule(c, "-m", "comment", "--comment", ownerComment),
		mkRule(c, "-m", "set", "--match-set", name(firewall.SetAllow), "src", "-j", "RETURN"),
	}
	for _, set := range []firewall.Set{firewall.SetBan, firewall.SetBanNet} {
		if enforce {
			rs = append(rs, b.nflogRule(NFLOGPrefixBan, "-m", "set", "--match-set", name(set), "src")...)
			rs = append(rs, mkRule(c, "-m", "set", "--match-set", name(set), "src", "-j", "DROP"))
			continue
		}
		// monitor drops nothing: a banned source is logged (rate limited, so
		// a scan cannot flood the journal) and counted by the RETURN.
		rs = append(rs,
			mkRule(c, "-m", "set", "--match-set", name(set), "src", "-m", "limit", "--limit", "6/min",
				"-j", "LOG", "--log-prefix", logBanPrefix),
			mkRule(c, "-m", "set", "--match-set", name(set), "src", "-j", "RETURN"))
	}
	// A push candidate on probation (dropwatch) reaches the UDP SIP ports
	// only, never RTP: its entry RETURNs before the country rule.
	for _, pl := range portLists(b.cfg.UDPPorts) {
		rs = append(rs, mkRule(c, "-p", "udp", "-m", "multiport", "--dports", pl,
			"-m", "set", "--match-set", name(firewall.SetProbation), "src", "-j", "RETURN"))
	}
	rs = append(rs, mkRule(c, "-m", "set", "--match-set", name(firewall.SetAllowCountry), "src", "-j", "RETURN"))
	switch {
	case !geoDrop:
		// geo_mode strict or monitor: other countries reach Asterisk; the
		// rule only counts them.
		return append(rs, mkRule(c, "-j", "RETURN"))
	case enforce:
		rs = append(rs, b.nflogRule(NFLOGPrefixGeo)...)
		return append(rs, mkRule(c, "-j", "DROP"))
	default:
		return append(rs,
			mkRule(c, "-m", "limit", "--limit", "6/min", "-j", "LOG", "--log-prefix", logDropPrefix),
			mkRule(c, "-j", "RETURN"))
	}
}

// portLists splits ranges into multiport lists of at most 15 port slots
// (a range takes two), the multiport module's limit.
func portLists(ranges ...[]firewall.PortRange) []string {
	var out []string
	var cur []string
	slots := 0
	for _, rs := range ranges {
		for _, r := range rs {
			s, n := fmt.Sprint(r.From), 1
			if r.To != r.From {
				s, n = fmt.Sprintf("%d:%d", r.From, r.To), 2
			}
			if slots+n > 15 {
				out = append(out, strings.Join(cur, ","))
				cur, slots = nil, 0
			}
			cur = append(cur, s)
			slots += n
		}
	}
	if len(cur) > 0 {
		out = append(out, strings.Join(cur, ","))
	}
	return out
}

func (b *Backend) jumpRules() []rule {
	var rs []rule
	for _, pl := range portLists(b.cfg.UDPPorts, b.cfg.RTPPorts) {
		rs = append(rs, mkRule("INPUT", "-p", "udp", "-m", "multiport", "--dports", pl,
			"-m", "comment", "--comment", jumpComment, "-j", b.cfg.Chain))
	}
	for _, pl := range portLists(b.cfg.TCPPorts) {
		rs = append(rs, mkRule("INPUT", "-p", "tcp", "-m", "multiport", "--dports", pl,
			"-m", "comment", "--comment", jumpComment, "-j", b.cfg.Chain))
	}
	return rs
}

// isOurJump tells whether an INPUT line is a jump sipsentry made: to its
// chain and carrying its comment. Such lines contain no quoted words.
func (b *Backend) isOurJump(line string) bool {
	return strings.HasPrefix(line, "-A INPUT ") && strings.HasSuffix(line, " -j "+b.cfg.Chain) &&
		strings.Contains(line, " -m comment --comment "+jumpComment+" ")
}

func (b *Backend) inputRules(fam string) ([]string, error) {
	var lines []string
	var err error
	b.run.do(func() { lines, err = b.ipt[fam].List(table, "INPUT") })
	if err != nil {
		return nil, fmt.Errorf("iptables: list INPUT (%s): %w", fam, err)
	}
	var out []string
	for _, l := range lines {
		if strings.HasPrefix(l, "-A ") {
			out = append(out, l)
		}
	}
	return out, nil
}

// ---- Up / Down

// Up creates what is missing and corrects what differs; it refuses, before
// any change, when an object of its names is not sipsentry's.
func (b *Backend) Up(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.jumpRules()) == 0 {
		return fmt.Errorf("iptables: no protected port configured (firewall.udp_ports, tcp_ports, rtp_ports)")
	}
	inv, err := b.inventory(ctx)
	if err != nil {
		return err
	}
	if err := b.foreign(inv); err != nil {
		return err
	}
	// Sets first: rules refer to them.
	if err := b.prepare(ctx, inv); err != nil {
		return err
	}
	for _, fam := range families {
		if err := b.upChain(fam, inv.chains[fam]); err != nil {
			return err
		}
		if err := b.upJumps(fam); err != nil {
			return err
		}
	}
	b.verifyMu.Lock()
	for _, fam := range families {
		b.recordGolden(fam)
	}
	b.verifyMu.Unlock()
	b.log.Info("iptables: firewall up", "chain", b.cfg.Chain, "mode", string(b.cfg.Mode))
	return nil
}

// Prepare creates the sets but no rule, so the caller can fill the allow
// sets before Up installs the DROP (firewall.UpFilled). It refuses like Up
// when a set is not sipsentry's. It adds no entry: what the sets hold is
// the caller's desired state alone.
func (b *Backend) Prepare(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	inv, err := b.inventory(ctx)
	if err != nil {
		return err
	}
	if err := b.foreign(inv); err != nil {
		return err
	}
	return b.prepare(ctx, inv)
}

func (b *Backend) prepare(ctx context.Context, inv inventory) error {
	var script strings.Builder
	var resize []setSpec
	for _, s := range b.specs() {
		if h, ok := inv.sets[s.name]; ok {
			if s.set == firewall.SetBan && h.MaxElem != s.maxElem {
				resize = append(resize, s)
			}
			continue
		}
		script.WriteString(s.createLine(s.name, 0, s.maxElem))
	}
	if err := b.restore(ctx, script.String()); err != nil {
		return fmt.Errorf("iptables: create sets: %w", err)
	}
	for _, s := range resize {
		if err := b.resize(ctx, s, inv.sets[tmpName(s.name)]); err != nil {
			return err
		}
	}
	for _, v := range b.verified {
		v.Store(true)
	}
	return nil
}

// ensureOurs checks once per set (until Down) that its kernel sets are
// sipsentry's, so Add and Delete never write into a foreign set of the
// same name (e.g. when `ban` runs before `firewall up`).
func (b *Backend) ensureOurs(ctx context.Context, set firewall.Set) error {
	if b.verified[set].Load() {
		return nil
	}
	if _, err := b.checkLive(ctx, set); err != nil {
		return err
	}
	b.verified[set].Store(true)
	return nil
}

// resize gives an existing ban set the configured maxelem by copying its
// entries (with their remaining timeouts) into a new set and swapping.
func (b *Backend) resize(ctx context.Context, s setSpec, staleTmp setHeader) error {
	out, err := b.ipsetCmd(ctx, nil, "save", s.name)
	if err != nil {
		return err
	}
	es, err := parseSave(out, s.name)
	if err != nil {
		return err
	}
	if len(es) > s.maxElem {
		return fmt.Errorf("%w: %s holds %d entries, more than firewall.ban_maxelem = %d; raise it", firewall.ErrSetFull, s.name, len(es), s.maxElem)
	}
	var script strings.Builder
	tmp := tmpName(s.name)
	if staleTmp.Name != "" {
		if err := staleTmp.matches(s); err != nil {
			return err
		}
		script.WriteString("destroy " + tmp + "\n")
	}
	script.WriteString(s.createLine(tmp, len(es), s.maxElem))
	for _, e := range es {
		addLine(&script, "add", tmp, s, e)
	}
	script.WriteString("swap " + tmp + " " + s.name + "\ndestroy " + tmp + "\n")
	if err := b.restore(ctx, script.String()); err != nil {
		return fmt.Errorf("iptables: resize %s to maxelem %d: %w", s.name, s.maxElem, err)
	}
	b.log.Info("iptables: ban set resized", "set", s.name, "maxelem", s.maxElem, "entries", len(es))
	return nil
}

func (b *Backend) upChain(fam string, st chainState) error {
	want := b.chainRules(fam)
	var err error
	b.run.do(func() {
		ipt := b.ipt[fam]
		if !st.exists {
			if err = ipt.NewChain(table, b.cfg.Chain); err != nil {
				return
			}
		}
		// Rule by rule in place, so the chain never lacks its DROP while the
		// jump exists (a mode change replaces only the last rules).
		for i, r := range want {
			switch {
			case i >= len(st.rules):
				err = ipt.Append(table, b.cfg.Chain, r.args...)
			case st.rules[i] != r.line:
				err = ipt.Replace(table, b.cfg.Chain, i+1, r.args...)
			}
			if err != nil {
				return
			}
		}
		for n := len(st.rules); n > len(want); n-- {
			if err = ipt.DeleteById(table, b.cfg.Chain, n); err != nil {
				return
			}
		}
	})
	if err != nil {
		return missingExtension(fmt.Errorf("iptables: set up chain %s (%s): %w", b.cfg.Chain, fam, err))
	}
	return nil
}

// missingExtension marks an iptables failure to load a match or target
// (set, multiport, comment, limit, LOG) as ErrUnavailable. iptables reports
// it only in words, so the words are matched.
func missingExtension(err error) error {
	msg := err.Error()
	for _, s := range []string{"Couldn't load match", "Couldn't load target", "No chain/target/match by that name", "Extension set revision"} {
		if strings.Contains(msg, s) {
			return fmt.Errorf("%w: %v: load the kernel modules (modprobe xt_set xt_multiport xt_comment xt_limit xt_LOG) or install the iptables extensions", firewall.ErrUnavailable, err)
		}
	}
	return err
}

func (b *Backend) upJumps(fam string) error {
	cur, err := b.inputRules(fam)
	if err != nil {
		return err
	}
	want := b.jumpRules()
	wanted := map[string]bool{}
	for _, r := range want {
		wanted[r.line] = true
	}
	b.run.do(func() {
		ipt := b.ipt[fam]
		present := map[string]bool{}
		for _, l := range cur {
			if !b.isOurJump(l) {
				continue
			}
			if wanted[l] {
				present[l] = true
				continue
			}
			// A jump of an earlier config (other ports): remove it.
			if err = ipt.Delete(table, "INPUT", strings.Fields(l)[2:]...); err != nil {
				return
			}
		}
		pos := b.cfg.InputPosition
		for _, r := range want {
			if present[r.line] {
				continue
			}
			var lines []string
			if lines, err = ipt.List(table, "INPUT"); err != nil {
				return
			}
			count := 0
			for _, l := range lines {
				if strings.HasPrefix(l, "-A ") {
					count++
				}
			}
			if pos > count+1 {
				pos = count + 1
			}
			if err = ipt.Insert(table, "INPUT", pos, r.args...); err != nil {
				return
			}
			pos++
		}
	})
	if err != nil {
		return missingExtension(fmt.Errorf("iptables: jump rules in INPUT (%s): %w", fam, err))
	}
	return nil
}

// Down removes the jump rules, the chain and the sets, each only if it is
// sipsentry's; foreign objects of the same names are left and reported.
func (b *Backend) Down(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, v := range b.verified {
		v.Store(false)
	}
	b.verifyMu.Lock()
	clear(b.golden)
	b.verifyMu.Unlock()
	inv, err := b.inventory(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, fam := range families {
		cur, err := b.inputRules(fam)
		if err != nil {
			return err
		}
		st := inv.chains[fam]
		b.run.do(func() {
			ipt := b.ipt[fam]
			for _, l := range cur {
				if b.isOurJump(l) {
					if err = ipt.Delete(table, "INPUT", strings.Fields(l)[2:]...); err != nil {
						errs = append(errs, fmt.Errorf("iptables: delete %q: %w", l, err))
					}
				}
			}
			// The jumps went first: a chain still referenced cannot be
			// deleted. A chain that lost its marker but holds nothing
			// foreign (after `iptables -F`) is sipsentry's too.
			if st.exists && (st.ours || b.adoptable(fam, st.rules)) {
				if err = ipt.ClearAndDeleteChain(table, b.cfg.Chain); err != nil {
					errs = append(errs, fmt.Errorf("iptables: delete chain %s (%s): %w", b.cfg.Chain, fam, err))
				}
			}
		})
	}
	var script strings.Builder
	for _, s := range b.specs() {
		for _, name := range []string{s.name, tmpName(s.name)} {
			if h, ok := inv.sets[name]; ok {
				if h.matches(s) == nil {
					script.WriteString("destroy " + name + "\n")
				}
			}
		}
	}
	if err := b.restore(ctx, script.String()); err != nil {
		errs = append(errs, fmt.Errorf("iptables: destroy sets: %w", err))
	}
	if err := b.foreign(inv); err != nil {
		errs = append(errs, fmt.Errorf("left in place: %w", err))
	}
	if len(errs) == 0 {
		b.log.Info("iptables: firewall down", "chain", b.cfg.Chain)
	}
	return errors.Join(errs...)
}

// ---- set operations

// lockSet takes the shared lock and set's own one; it returns the unlock.
func (b *Backend) lockSet(set firewall.Set) func() {
	b.mu.RLock()
	m := b.setMu[set]
	m.Lock()
	return func() { m.Unlock(); b.mu.RUnlock() }
}

func splitFamilies(entries []firewall.Entry) map[string][]firewall.Entry {
	m := map[string][]firewall.Entry{"inet": nil, "inet6": nil}
	for _, e := range entries {
		f := famOf(e.Prefix)
		m[f] = append(m[f], e)
	}
	return m
}

// checkLive fails unless set's kernel sets exist and are sipsentry's.
func (b *Backend) checkLive(ctx context.Context, set firewall.Set) (map[string]setHeader, error) {
	sets, err := b.listSets(ctx)
	if err != nil {
		return nil, err
	}
	for _, fam := range families {
		s := b.spec(set, fam)
		h, ok := sets[s.name]
		if !ok {
			return nil, fmt.Errorf("iptables: ipset %s does not exist: run `sipsentry firewall up` first", s.name)
		}
		if err := h.matches(s); err != nil {
			return nil, err
		}
	}
	return sets, nil
}

// Replace builds a temporary set per family, fills it, swaps it with the
// live one and destroys the old content, all in one `ipset restore` stream:
// packets see either the old or the new set, never an empty one.
func (b *Backend) Replace(ctx context.Context, set firewall.Set, entries []firewall.Entry) error {
	entries, err := firewall.ValidateAll(set, entries)
	if err != nil {
		return err
	}
	unlock := b.lockSet(set)
	defer unlock()
	sets, err := b.checkLive(ctx, set)
	if err != nil {
		return err
	}
	byFam := splitFamilies(entries)
	var script strings.Builder
	script.Grow(len(entries) * 40)
	for _, fam := range families {
		s := b.spec(set, fam)
		es := byFam[fam]
		maxElem := s.maxElem
		if set != firewall.SetBan {
			for maxElem < len(es) {
				maxElem *= 2
			}
		} else if len(es) > maxElem {
			return fmt.Errorf("%w: %d entries for %s, ban_maxelem is %d", firewall.ErrSetFull, len(es), s.name, maxElem)
		}
		tmp := tmpName(s.name)
		if h, ok := sets[tmp]; ok {
			// Left by an interrupted Replace; ours only if it looks like ours.
			if err := h.matches(s); err != nil {
				return err
			}
			script.WriteString("destroy " + tmp + "\n")
		}
		script.WriteString(s.createLine(tmp, len(es), maxElem))
		for _, e := range es {
			addLine(&script, "add", tmp, s, e)
		}
		script.WriteString("swap " + tmp + " " + s.name + "\n")
		script.WriteString("destroy " + tmp + "\n")
	}
	if err := b.restore(ctx, script.String()); err != nil {
		return fmt.Errorf("iptables: replace %s: %w", set, err)
	}
	return nil
}

// bulkThreshold: above this many entries an Add or Delete is one restore
// stream (one exec, ~1 ms) rather than netlink requests (~10 µs each).
const bulkThreshold = 64

func (b *Backend) Add(ctx context.Context, set firewall.Set, entries ...firewall.Entry) error {
	entries, err := firewall.ValidateAll(set, entries)
	if err != nil {
		return err
	}
	unlock := b.lockSet(set)
	defer unlock()
	if err := b.ensureOurs(ctx, set); err != nil {
		return err
	}
	if len(entries) > bulkThreshold {
		var script strings.Builder
		for _, e := range entries {
			s := b.spec(set, famOf(e.Prefix))
			addLine(&script, "add", s.name, s, e)
		}
		if err := b.restore(ctx, script.String()); err != nil {
			return fmt.Errorf("iptables: add to %s: %w", set, err)
		}
		return nil
	}
	for _, e := range entries {
		if err := b.nlAdd(set, e); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) nlAdd(set firewall.Set, e firewall.Entry) error {
	s := b.spec(set, famOf(e.Prefix))
	// One request without an acknowledgement on the backend's own socket:
	// the kernel has the entry when sendmsg returns and queues only a
	// refusal, so an add is one send and one non-blocking read, where the
	// netlink package's IpsetAdd also asked the socket's address and waited
	// for the ack (two more syscalls and their allocations per ban).
	b.nlMu.Lock()
	defer b.nlMu.Unlock()
	if b.aconn == nil {
		return fmt.Errorf("iptables: add %s: the backend is closed", e.Prefix)
	}
	bt := &b.abatch
	bt.reset(b.aconn, nl.IPSET_CMD_ADD)
	if err := bt.put(s, e); err != nil {
		return err
	}
	return bt.flush()
}

func (b *Backend) nlError(verb, name string, p netip.Prefix, err error) error {
	if err == nil {
		return nil
	}
	return nlErrorFor(verb, name, p, err)
}

func (b *Backend) Delete(ctx context.Context, set firewall.Set, prefixes ...netip.Prefix) error {
	es := make([]firewall.Entry, len(prefixes))
	for i, p := range prefixes {
		e, err := firewall.Validate(set, firewall.Entry{Prefix: p})
		if err != nil {
			return err
		}
		es[i] = e
	}
	unlock := b.lockSet(set)
	defer unlock()
	if err := b.ensureOurs(ctx, set); err != nil {
		return err
	}
	if len(es) > bulkThreshold {
		var script strings.Builder
		for _, e := range es {
			s := b.spec(set, famOf(e.Prefix))
			addLine(&script, "del", s.name, s, e)
		}
		if err := b.restore(ctx, script.String()); err != nil {
			return fmt.Errorf("iptables: delete from %s: %w", set, err)
		}
		return nil
	}
	for _, e := range es {
		s := b.spec(set, famOf(e.Prefix))
		ne := &netlink.IPSetEntry{IP: e.Prefix.Addr().AsSlice()}
		if s.typ == "hash:net" {
			ne.CIDR = uint8(e.Prefix.Bits())
		}
		b.nlMu.Lock()
		err := b.nl.IpsetDel(s.name, ne)
		b.nlMu.Unlock()
		var ie nl.IPSetError
		if errors.As(err, &ie) && int(ie) == nl.IPSET_ERR_EXIST { // not in the set: nothing to do
			err = nil
		}
		if err := b.nlError("delete", s.name, e.Prefix, err); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) Contains(ctx context.Context, set firewall.Set, addr netip.Addr) (bool, error) {
	if !firewall.KnownSet(set) || !addr.IsValid() {
		return false, fmt.Errorf("%w: contains %q in set %q", firewall.ErrInvalid, addr, set)
	}
	addr = addr.Unmap()
	s := b.spec(set, firewall.Family(addr))
	b.nlMu.Lock()
	// No CIDR: the kernel tests the address against every prefix length.
	ok, err := b.nl.IpsetTest(s.name, &netlink.IPSetEntry{IP: addr.AsSlice()})
	b.nlMu.Unlock()
	if err != nil {
		return false, b.nlError("test", s.name, netip.PrefixFrom(addr, addr.BitLen()), err)
	}
	return ok, nil
}

func (b *Backend) List(ctx context.Context, set firewall.Set) ([]firewall.Entry, error) {
	if !firewall.KnownSet(set) {
		return nil, fmt.Errorf("%w: unknown set %q", firewall.ErrInvalid, set)
	}
	return b.list(ctx, set)
}

func (b *Backend) list(ctx context.Context, set firewall.Set) ([]firewall.Entry, error) {
	var all []firewall.Entry
	for _, fam := range families {
		name := b.spec(set, fam).name
		out, err := b.ipsetCmd(ctx, nil, "save", name)
		if err != nil {
			return nil, err
		}
		es, err := parseSave(out, name)
		if err != nil {
			return nil, err
		}
		all = append(all, es...)
	}
	slices.SortFunc(all, func(x, y firewall.Entry) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return x.Prefix.Bits() - y.Prefix.Bits()
	})
	return all, nil
}

// DropFlows deletes every conntrack entry from or to addr, so that an
// established UDP flow meets the ban at its next packet. The kernel offers
// no lookup by one address: this walks the conntrack table (DropFlow cuts a
// known flow at once; DropFlowsOf walks once for many addresses).
func (b *Backend) DropFlows(ctx context.Context, addr netip.Addr) error {
	return b.DropFlowsOf(ctx, []netip.Addr{addr})
}

// addrFilter matches flows whose original source or destination is one of
// the addresses (both directions: flows the source opened and flows the
// PBX opened to it).
type addrFilter map[netip.Addr]bool

func (f addrFilter) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	src, _ := netip.AddrFromSlice(flow.Forward.SrcIP)
	dst, _ := netip.AddrFromSlice(flow.Forward.DstIP)
	return f[src.Unmap()] || f[dst.Unmap()]
}

// DropFlowsOf deletes the conntrack entries of every address in addrs with
// one walk of the table per family, on the walk's own netlink socket (ipset
// adds and DropFlow go on meanwhile).
func (b *Backend) DropFlowsOf(ctx context.Context, addrs []netip.Addr) error {
	byFam := map[netlink.InetFamily]addrFilter{}
	for _, a := range addrs {
		if !a.IsValid() {
			return fmt.Errorf("%w: dropflows of an invalid address", firewall.ErrInvalid)
		}
		a = a.Unmap()
		fam := netlink.InetFamily(unix.AF_INET)
		if a.Is6() {
			fam = unix.AF_INET6
		}
		if byFam[fam] == nil {
			byFam[fam] = addrFilter{}
		}
		byFam[fam][a] = true
	}
	for fam, f := range byFam {
		var err error
		b.walkMu.Lock()
		lowPriority(func() { _, err = b.ctWalker.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f) })
		b.walkMu.Unlock()
		if err != nil {
			return fmt.Errorf("iptables: delete conntrack entries of %d addresses: %w (is nf_conntrack_netlink loaded?)", len(f), err)
		}
	}
	return nil
}

// lowPriority runs f on an OS thread of its own at nice 19. A conntrack
// walk is background work, and the kernel does it in the context of the
// thread that reads the dump: 10-40 ms of CPU over the whole conntrack hash
// (shared by every namespace) that should not take a core from the ban path
// on a small machine. Nice 19 rather than SCHED_IDLE: on a busy host the
// walk must still finish in about a second. The socket was opened earlier,
// so the thread's namespace does not matter.
func lowPriority(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread ends with this goroutine, so its
		// priority never reaches other goroutines.
		runtime.LockOSThread()
		_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19) // a thread, on Linux; best effort
		f()
	}()
	<-done
}

// DropFlow deletes one conntrack entry by its original tuple: a hash
// lookup in the kernel, not a walk of the table like DropFlows. The flow
// may have been opened by either side, so both orientations are tried.
func (b *Backend) DropFlow(ctx context.Context, proto string, remote, local netip.AddrPort) error {
	var pnum uint8
	switch proto {
	case "udp":
		pnum = unix.IPPROTO_UDP
	case "tcp":
		pnum = unix.IPPROTO_TCP
	}
	ra, la := remote.Addr().Unmap(), local.Addr().Unmap()
	if pnum == 0 || !ra.IsValid() || !la.IsValid() || ra.Is4() != la.Is4() {
		return fmt.Errorf("%w: dropflow %q %s %s", firewall.ErrInvalid, proto, remote, local)
	}
	remote, local = netip.AddrPortFrom(ra, remote.Port()), netip.AddrPortFrom(la, local.Port())
	if err := b.ctDeleteBoth(pnum, remote, local); err != nil {
		return fmt.Errorf("iptables: delete conntrack entry %s %s <-> %s: %w", proto, remote, local, err)
	}
	return nil
}

// Status reports sipsentry's rules (jumps and chain) with their counters
// and its sets' sizes.
func (b *Backend) Status(ctx context.Context) (firewall.Status, error) {
	st := firewall.Status{Backend: "iptables", Mode: string(b.cfg.Mode)}
	inv, err := b.inventory(ctx)
	if err != nil {
		return st, err
	}
	st.Up = true
	for _, fam := range families {
		c := inv.chains[fam]
		if !c.exists || !c.ours {
			st.Up = false
			continue
		}
		var input, chain []string
		b.run.do(func() {
			if input, err = b.ipt[fam].ListWithCounters(table, "INPUT"); err != nil {
				return
			}
			chain, err = b.ipt[fam].ListWithCounters(table, b.cfg.Chain)
		})
		if err != nil {
			return st, fmt.Errorf("iptables: rule counters (%s): %w", fam, err)
		}
		for _, l := range input {
			if r, ok := parseCounted(l); ok && b.isOurJump(r.Spec) {
				r.Family = fam
				st.Rules = append(st.Rules, r)
			}
		}
		for _, l := range chain {
			if r, ok := parseCounted(l); ok {
				r.Family = fam
				st.Rules = append(st.Rules, r)
			}
		}
	}
	for _, fam := range families {
		for _, set := range firewall.Sets {
			s := b.spec(set, fam)
			h, ok := inv.sets[s.name]
			if !ok {
				st.Up = false
				continue
			}
			st.Sets = append(st.Sets, firewall.SetInfo{Set: set, Family: fam, Entries: h.Entries, MaxElem: h.MaxElem, Memory: h.Memory})
		}
	}
	return st, nil
}

// parseCounted turns "-A C ... -c PKTS BYTES ..." (iptables -v -S) into a
// rule with counters and the spec without them.
func parseCounted(line string) (firewall.Rule, bool) {
	if !strings.HasPrefix(line, "-A ") {
		return firewall.Rule{}, false
	}
	f := strings.Split(line, " ")
	for i := 0; i+2 < len(f); i++ {
		if f[i] == "-c" {
			var r firewall.Rule
			if _, err := fmt.Sscan(f[i+1], &r.Packets); err != nil {
				return r, false
			}
			if _, err := fmt.Sscan(f[i+2], &r.Bytes); err != nil {
				return r, false
			}
			r.Spec = strings.Join(append(slices.Clone(f[:i]), f[i+3:]...), " ")
			return r, true
		}
	}
	return firewall.Rule{Spec: line}, true
}
