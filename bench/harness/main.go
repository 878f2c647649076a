// Command harness measures sipsentry's speed and memory against baselines
// taken in the same run, on the real kernel, inside a network namespace it
// creates and deletes. It is a development tool: not shipped, not run in CI.
// It needs root, ip, ipset and iptables.
//
//	go run ./bench/harness -latency        # event received → entry in the kernel set
//	go run ./bench/harness -rss            # RSS of `sipsentry run` with lists, mmdb and 100k bans
//
// Addresses are TEST-NET (198.51.100.0/24, 203.0.113.0/24) and 2001:db8::/32;
// no packet leaves the namespace, the addresses only go into its sets.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/bench/internal/benchns"
	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/iptables"
	"github.com/sipsentry/sipsentry/internal/config"
	sipdaemon "github.com/sipsentry/sipsentry/internal/daemon"
	"github.com/sipsentry/sipsentry/state"
)

func main() {
	lat := flag.Bool("latency", false, "measure event → kernel set latency")
	rss := flag.Bool("rss", false, "measure the daemon's RSS with lists, mmdb and many bans")
	n := flag.Int("n", 10000, "bans for -latency")
	flag.DurationVar(&pace, "pace", 0, "for -latency: pause between events (0: back to back, a flood)")
	flag.BoolVar(&noConntrack, "no-conntrack", false, "diagnosis: make the post-ban conntrack flush a no-op (isolates the DB writer's cost)")
	flag.BoolVar(&sepConntrack, "separate-conntrack", false, "diagnosis: give the post-ban conntrack flush its own backend (netlink socket) instead of sharing the ban adds' one")
	flag.BoolVar(&runEngine, "engine-run", true, "run the engine's background loop (DB writer, post-ban conntrack flush) during -latency, as the daemon does")
	nrss := flag.Int("bans", 100000, "bans restored from the state DB for -rss")
	flag.IntVar(&feedN, "feed", 2000, "further bans from live AMI events for -rss")
	flag.BoolVar(&useMMDB, "mmdb", true, "for -rss: load dbip-country.mmdb")
	flag.StringVar(&onlyCountries, "countries", "", "for -rss: comma-separated country codes to allow (default: every shipped list)")
	bin := flag.String("bin", "", "sipsentry binary for -rss (default: go build)")
	binBefore := flag.String("bin-before", "", "for -rss: also measure this binary first, in the same run (e.g. a build of the previous commit), and print both")
	flag.StringVar(&profileDir, "profile", "", "for -rss: save the daemon's heap profile after each settle in this directory (turns on metrics.pprof)")
	flag.DurationVar(&settleFor, "settle", 10*time.Second, "for -rss: idle time before reading the RSS")
	flag.Parse()
	if profileDir != "" {
		if err := os.MkdirAll(profileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "-profile:", err)
			os.Exit(1)
		}
	}
	if !*lat && !*rss {
		*lat, *rss = true, true
	}
	if os.Geteuid() != 0 {
		fatal("harness: needs root (network namespace, ipset, iptables)")
	}
	if *lat {
		if err := latency(*n); err != nil {
			fatal("harness: latency: %v", err)
		}
	}
	if *rss {
		var before *rssResult
		if *binBefore != "" {
			r, err := rssRun(*binBefore, *nrss)
			if err != nil {
				fatal("harness: rss (before): %v", err)
			}
			before = &r
		}
		after, err := rssRun(*bin, *nrss)
		if err != nil {
			fatal("harness: rss: %v", err)
		}
		if before != nil {
			printRSSCompare(*before, after)
		}
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// ---- namespace helpers

// nsHandle is the command's own namespace (bench/internal/benchns).
type nsHandle = benchns.NS

func newNS() (*nsHandle, error) { return benchns.New("sstbench-") }

// ---- latency

// runEngine: with false, only the hot path runs (diagnosis: it shows what the
// background work costs the hot path).
var runEngine bool

// sepConntrack, noConntrack: see the -separate-conntrack and -no-conntrack flags.
var sepConntrack, noConntrack bool

// pace: see the -pace flag.
var pace time.Duration

// noFlowsBackend skips the conntrack flush.
type noFlowsBackend struct{ *iptables.Backend }

func (noFlowsBackend) DropFlows(context.Context, netip.Addr) error { return nil }

// DropFlowsOf is the engine's coalesced walk; skipped too.
func (noFlowsBackend) DropFlowsOf(context.Context, []netip.Addr) error { return nil }

// splitBackend sends DropFlows to a second backend instance (own netlink
// socket), so a conntrack table walk cannot hold up a ban add.
type splitBackend struct {
	*iptables.Backend
	flows *iptables.Backend
}

func (s splitBackend) DropFlows(ctx context.Context, a netip.Addr) error {
	return s.flows.DropFlows(ctx, a)
}

func (s splitBackend) DropFlowsOf(ctx context.Context, as []netip.Addr) error {
	return s.flows.DropFlowsOf(ctx, as)
}

// invalidAccount is a PJSIP InvalidAccountID as Asterisk 22 sends it.
func invalidAccount(src netip.AddrPort, i int) []byte {
	fam := "IPV4"
	if src.Addr().Is6() {
		fam = "IPV6"
	}
	return fmt.Appendf(nil, "Event: InvalidAccountID\r\nPrivilege: security,all\r\nSystemName: sentrylab\r\n"+
		"EventTV: 2026-11-25T13:12:07.974+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\n"+
		"AccountID: %d\r\nSessionID: 1-%d@bench\r\nLocalAddress: %s/UDP/127.0.0.1/5060\r\n"+
		"RemoteAddress: %s/UDP/%s/%d\r\n\r\n", 100+i%50, i, fam, fam, src.Addr(), src.Port())
}

type foreign struct{}

func (foreign) Allowed(netip.Addr) bool { return false }

func v6addr(i int) netip.Addr {
	var b [16]byte
	copy(b[:], netip.MustParseAddr("2001:db8:b000::").AsSlice())
	b[12], b[13], b[14], b[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	return netip.AddrFrom16(b)
}

func v4addrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range []string{"198.51.100.0", "203.0.113.0"} {
		a := netip.MustParseAddr(p)
		for range 254 {
			a = a.Next()
			out = append(out, a)
		}
	}
	return out
}

type quantiles struct{ p50, p99, max time.Duration }

func quant(ds []time.Duration) quantiles {
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return quantiles{at(0.50), at(0.99), s[len(s)-1]}
}

func latency(n int) error {
	ns, err := newNS()
	if err != nil {
		return err
	}
	defer ns.Delete()
	ctx := context.Background()

	cfg := config.Default()
	cfg.Firewall.Mode = "enforce"
	cfg.Engine.GeoMode = "strict"
	cfg.Geo.AllowCountries = []string{"JP"}
	cfg.Push.Hosts = nil
	cfg.Push.Resolver = "127.0.0.1:1"
	cfg.AMI.Address = "127.0.0.1:5038"
	fwo := sipdaemon.FirewallOptions(cfg.Firewall, nil, nil).Options
	fwo.Netns = ns.Name
	be, err := iptables.New(fwo)
	if err != nil {
		return err
	}
	defer be.Close()
	if err := be.Up(ctx); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sstbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := state.Open(filepath.Join(dir, "sipsentry.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	// The daemon logs every ban as JSON; keep that cost in the measurement.
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	var bans int
	store := st
	var fw firewall.Backend = be
	if sepConntrack {
		be2, err := iptables.New(fwo)
		if err != nil {
			return err
		}
		defer be2.Close()
		fw = splitBackend{be, be2}
	}
	if noConntrack {
		fw = noFlowsBackend{be}
	}
	eng, err := engine.New(sipdaemon.EngineOptions(cfg), engine.Deps{Firewall: fw, Geo: foreign{}, Store: store, Logger: log, HostAddrs: []netip.Addr{},
		OnDecision: func(d engine.Decision) {
			if d.Kind == engine.DecisionBan {
				bans++
			}
		}})
	if err != nil {
		return err
	}
	if err := eng.Start(ctx); err != nil {
		return err
	}
	rctx, stop := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	if runEngine {
		go func() { runDone <- eng.Run(rctx) }()
	} else {
		close(runDone)
	}
	defer func() { stop(); <-runDone }()

	measure := func(addrs []netip.Addr) ([]time.Duration, error) {
		msgs := make([][]byte, len(addrs))
		for i, a := range addrs {
			msgs[i] = invalidAccount(netip.AddrPortFrom(a, 5060), i)
		}
		out := make([]time.Duration, 0, len(addrs))
		before := bans
		for _, raw := range msgs {
			if pace > 0 {
				time.Sleep(pace)
			}
			rd := ami.NewReader(bytes.NewReader(raw), ami.ReaderOptions{})
			t0 := time.Now()
			m, err := rd.ReadMessage()
			if err != nil {
				return nil, err
			}
			ev, err := ami.ParseSecurityEvent(&m)
			if err != nil {
				return nil, err
			}
			eng.Handle(ctx, ev)
			out = append(out, time.Since(t0))
		}
		if bans-before != len(addrs) {
			return nil, fmt.Errorf("%d events gave %d bans", len(addrs), bans-before)
		}
		return out, nil
	}

	// Baseline 1: one bare netlink ipset add per address (the kernel's own
	// cost, what any daemon pays at least), same set type, same namespace.
	var nl *netlink.Handle
	if err := ns.Do(func() error {
		var err error
		nl, err = netlink.NewHandle(0x0c /* NETLINK_NETFILTER */)
		return err
	}); err != nil {
		return err
	}
	defer nl.Close()
	mk := func(name, fam string) error {
		_, err := ns.Exec("ipset", "create", name, "hash:ip", "family", fam, "timeout", "3600", "comment", "maxelem", "1048576")
		return err
	}
	if err := mk("bench-base-v6", "inet6"); err != nil {
		return err
	}
	if err := mk("bench-base-v4", "inet"); err != nil {
		return err
	}
	bare := func(set string, addrs []netip.Addr) ([]time.Duration, error) {
		out := make([]time.Duration, 0, len(addrs))
		for _, a := range addrs {
			if pace > 0 {
				time.Sleep(pace) // same rhythm as the measurement: cold caches on both sides
			}
			t0 := time.Now()
			err := nl.IpsetAdd(set, &netlink.IPSetEntry{IP: a.AsSlice(), Timeout: ptr(uint32(3600)), Comment: "sipsentry: bench", Replace: true})
			out = append(out, time.Since(t0))
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	// Baseline 2: `ipset add` as a process per ban (how fail2ban's
	// iptables-ipset actions do it), over fewer addresses (it is slow).
	execAdd := func(set string, addrs []netip.Addr) ([]time.Duration, error) {
		out := make([]time.Duration, 0, len(addrs))
		for _, a := range addrs {
			t0 := time.Now()
			_, err := ns.Exec("ipset", "-exist", "add", set, a.String(), "timeout", "3600")
			out = append(out, time.Since(t0))
			if err != nil {
				return nil, err
			}
		}
		return out, nil
	}

	// The engine's post-ban work (conntrack flush) shares the backend's
	// netlink socket with the ban adds: time it alone.
	var dfs []time.Duration
	for i := range 200 {
		t0 := time.Now()
		if err := be.DropFlows(ctx, v6addr(1<<25+i)); err != nil {
			return err
		}
		dfs = append(dfs, time.Since(t0))
	}
	df := quant(dfs)

	v6 := make([]netip.Addr, n)
	base6 := make([]netip.Addr, n)
	for i := range n {
		v6[i] = v6addr(i)
		base6[i] = v6addr(i + 1<<24)
	}
	// Interleave halves so that noise on this shared machine hits both sides.
	half := n / 2
	var sip, base []time.Duration
	for _, step := range []func() error{
		func() error { d, err := bare("bench-base-v6", base6[:half]); base = append(base, d...); return err },
		func() error { d, err := measure(v6[:half]); sip = append(sip, d...); return err },
		func() error { d, err := bare("bench-base-v6", base6[half:]); base = append(base, d...); return err },
		func() error { d, err := measure(v6[half:]); sip = append(sip, d...); return err },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	// Every one of them is in the kernel's ban set.
	cnt, err := setCount(ns, "sipsentry-ban-v6")
	if err != nil {
		return err
	}
	if cnt < n {
		return fmt.Errorf("kernel ban set holds %d entries after %d bans", cnt, n)
	}
	v4 := v4addrs()
	sip4, err := measure(v4)
	if err != nil {
		return err
	}
	base4, err := bare("bench-base-v4", v4)
	if err != nil {
		return err
	}
	execD, err := execAdd("bench-base-v4", v4[:min(len(v4), 300)])
	if err != nil {
		return err
	}
	s, b, s4, b4, ex := quant(sip), quant(base), quant(sip4), quant(base4), quant(execD)
	fmt.Printf("event received → entry in the kernel ban set (AMI bytes → parse → engine → netlink ipset add, returns after the kernel has it); engine background loop running: %v; conntrack flush on its own socket: %v; conntrack flush skipped: %v; pause between events: %v\n", runEngine, sepConntrack, noConntrack, pace)
	fmt.Printf("  IPv6, %d bans:  sipsentry p50 %v  p99 %v  max %v\n", len(sip), s.p50, s.p99, s.max)
	fmt.Printf("                  bare netlink add p50 %v  p99 %v  max %v\n", b.p50, b.p99, b.max)
	fmt.Printf("                  ratio sipsentry/bare: p50 %.2f  p99 %.2f   (goal p99 <= 2ms: %v)\n",
		ratio(s.p50, b.p50), ratio(s.p99, b.p99), s.p99 <= 2*time.Millisecond)
	fmt.Printf("  IPv4, %d bans (TEST-NET): sipsentry p50 %v  p99 %v; bare netlink p50 %v  p99 %v; ratio p50 %.2f p99 %.2f\n",
		len(sip4), s4.p50, s4.p99, b4.p50, b4.p99, ratio(s4.p50, b4.p50), ratio(s4.p99, b4.p99))
	fmt.Printf("  post-ban conntrack flush (DropFlows, background, same netlink socket): p50 %v  p99 %v\n", df.p50, df.p99)
	fmt.Printf("  `ipset add` process per ban (fail2ban-style), %d adds: p50 %v  p99 %v  → sipsentry p50 is %.0fx faster\n",
		len(execD), ex.p50, ex.p99, ratio(ex.p50, s.p50))
	return nil
}

func ptr[T any](v T) *T { return &v }

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

func setCount(ns *nsHandle, set string) (int, error) {
	out, err := ns.Exec("ipset", "list", "-t", set)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Number of entries: "); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("ipset list -t %s: no entry count", set)
}

// ---- RSS

var (
	feedN         int
	onlyCountries string
	useMMDB       bool
	settleFor     time.Duration
	profileDir    string
)

// rssResult is one binary's VmRSS (kB) in each state.
type rssResult struct {
	bin                             string
	idle, lists, restored, live     int
	idleHWM, listsHWM, restHWM, hwm int
}

// printRSSCompare prints two binaries' figures side by side, as ratios to
// each one's idle baseline and to the 30 MB goal.
func printRSSCompare(b, a rssResult) {
	mb := func(kb int) float64 { return float64(kb) / 1024 }
	fmt.Printf("\nRSS before (%s) / after (%s), same run; MB, x idle, x 30 MB goal\n", b.bin, a.bin)
	for _, r := range []struct {
		name       string
		b, a       int
		bIdle, aId int
	}{
		{"idle", b.idle, a.idle, b.idle, a.idle},
		{"+lists+mmdb", b.lists, a.lists, b.idle, a.idle},
		{"+100k bans restored", b.restored, a.restored, b.idle, a.idle},
		{"+live bans", b.live, a.live, b.idle, a.idle},
	} {
		fmt.Printf("  %-20s before %5.1f MB (%.2fx idle, %.2fx goal)  after %5.1f MB (%.2fx idle, %.2fx goal)  after/before %.2f\n",
			r.name, mb(r.b), float64(r.b)/float64(r.bIdle), mb(r.b)/30, mb(r.a), float64(r.a)/float64(r.aId), mb(r.a)/30, float64(r.a)/float64(r.b))
	}
	fmt.Printf("  %-20s before %5.1f MB  after %5.1f MB\n", "peak (VmHWM)", mb(b.hwm), mb(a.hwm))
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above %s", dir)
		}
		dir = parent
	}
}

func procStatus(pid int) (rss, hwm int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 {
			switch f[0] {
			case "VmRSS:":
				rss, _ = strconv.Atoi(f[1])
			case "VmHWM:":
				hwm, _ = strconv.Atoi(f[1])
			}
		}
	}
	return rss, hwm, nil
}

type daemon struct {
	cmd *exec.Cmd
	srv *amitest.Server
	ns  *nsHandle
}

func (d *daemon) stop() {
	d.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		d.cmd.Process.Kill()
		<-done
	}
	d.srv.Close()
}

// startDaemon starts an AMI server and `sipsentry run` inside ns, with the
// given extra config, and waits for the login.
func startDaemon(ns *nsHandle, bin, dir, extra string) (*daemon, error) {
	var srv *amitest.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "sipsentry.toml")
	text := fmt.Sprintf(`state_dir = %q
[log]
level = "warn"
format = "json"
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
[firewall]
mode = "enforce"
backend = "iptables"
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = "127.0.0.1:9468"
pprof = %t
[control]
socket = %q
%s`, filepath.Join(dir, "state"), srv.Addr(), profileDir != "", filepath.Join(dir, "control.sock"), extra)
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "daemon.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := ns.Do(cmd.Start); err != nil {
		srv.Close()
		return nil, err
	}
	d := &daemon{cmd: cmd, srv: srv, ns: ns}
	loggedIn := make(chan bool, 1)
	go func() { loggedIn <- srv.WaitLogins(1) }()
	select {
	case ok := <-loggedIn:
		if !ok {
			d.stop()
			return nil, fmt.Errorf("daemon did not log in; see %s", logf.Name())
		}
	case <-time.After(60 * time.Second):
		d.stop()
		return nil, fmt.Errorf("daemon did not log in within 60s; see %s", logf.Name())
	}
	return d, nil
}

// settle waits (-settle) for the daemon to go idle, then reads its RSS and, from its
// /metrics, the Go heap in use (what the RSS is made of).
func settle(ns *nsHandle, pid int) (rss, hwm int, err error) {
	time.Sleep(settleFor)
	rss, hwm, err = procStatus(pid)
	if err == nil {
		fmt.Printf("    (pid %d: VmRSS %d kB; %s)\n", pid, rss, heapLine(ns))
		fmt.Printf("    (%s)\n", rssBreakdown(pid))
		if profileDir != "" {
			saveHeapProfile(ns, filepath.Join(profileDir, fmt.Sprintf("heap-%d-%d.pb.gz", pid, rss)))
		}
	}
	return rss, hwm, err
}

// saveHeapProfile writes the daemon's /debug/pprof/heap (metrics.pprof) to
// file, for -profile.
func saveHeapProfile(ns *nsHandle, file string) {
	out, err := daemonGet(ns, "/debug/pprof/heap", 30*time.Second)
	if err == nil {
		_, body, ok := bytes.Cut(out, []byte("\r\n\r\n"))
		if !ok {
			err = fmt.Errorf("no HTTP body")
		} else {
			err = os.WriteFile(file, body, 0o644)
		}
	}
	if err != nil {
		fmt.Printf("    (heap profile: %v)\n", err)
		return
	}
	fmt.Printf("    (heap profile: %s)\n", file)
}

// daemonGet fetches path from the daemon's metrics listener inside the
// namespace (the whole HTTP/1.0 response).
func daemonGet(ns *nsHandle, path string, timeout time.Duration) ([]byte, error) {
	var out []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", "127.0.0.1:9468", 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
		out, err = io.ReadAll(c)
		return err
	})
	return out, err
}

// rssBreakdown sums resident memory per kind of mapping from
// /proc/PID/smaps: the binary's pages, other files (a mapped mmdb, the
// SQLite -shm), and anonymous memory split into the Go heap arenas and the
// rest (SQLite's C allocator in modernc's libc, thread stacks).
func rssBreakdown(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		return "smaps: " + err.Error()
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	sums := map[string]int{}
	var order []string
	cur := ""
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 && !strings.HasSuffix(f[0], ":") {
			name := "anon"
			if len(f) >= 6 {
				name = strings.Join(f[5:], " ")
			}
			switch {
			case name == exe || strings.HasPrefix(name, exe):
				name = "binary"
			case strings.HasPrefix(name, "/"):
				name = filepath.Base(strings.TrimSuffix(name, " (deleted)"))
			}
			cur = name
			if _, ok := sums[cur]; !ok {
				order = append(order, cur)
			}
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 {
			n, _ := strconv.Atoi(f[1])
			sums[cur] += n
		}
	}
	slices.SortFunc(order, func(a, b string) int { return sums[b] - sums[a] })
	var parts []string
	for _, k := range order {
		if sums[k] >= 256 {
			parts = append(parts, fmt.Sprintf("%s %.1f MB", k, float64(sums[k])/1024))
		}
	}
	return "RSS by mapping: " + strings.Join(parts, ", ")
}

// heapLine scrapes the daemon's Go memory statistics.
func heapLine(ns *nsHandle) string {
	out, err := daemonGet(ns, "/metrics", 10*time.Second)
	if err != nil {
		return "metrics: " + err.Error()
	}
	var parts []string
	for _, l := range strings.Split(string(out), "\n") {
		for _, k := range []string{"go_memstats_heap_inuse_bytes ", "go_memstats_heap_idle_bytes ", "go_memstats_heap_released_bytes ", "go_memstats_sys_bytes "} {
			if v, ok := strings.CutPrefix(l, k); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				parts = append(parts, fmt.Sprintf("%s%.1f MB", strings.TrimSuffix(strings.TrimPrefix(k, "go_memstats_"), "_bytes "), f/(1<<20)))
			}
		}
	}
	return strings.Join(parts, ", ")
}

func rssRun(bin string, nbans int) (res rssResult, err error) {
	root, err := repoRoot()
	if err != nil {
		return res, err
	}
	if bin == "" {
		bin = filepath.Join(os.TempDir(), "sipsentry-bench-bin")
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/sipsentry")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return res, fmt.Errorf("go build: %v: %s", err, out)
		}
	}
	geoDir := filepath.Join(root, "..", "shared", "testdata", "geo")
	var ccs []string
	ents, err := os.ReadDir(geoDir)
	if err != nil {
		return res, err
	}
	for _, e := range ents {
		if cc, ok := strings.CutSuffix(e.Name(), "-ipv4-aggregated.txt"); ok {
			cc = strings.ToUpper(cc)
			if onlyCountries == "" || slices.Contains(strings.Split(strings.ToUpper(onlyCountries), ","), cc) {
				ccs = append(ccs, `"`+cc+`"`)
			}
		}
	}

	// Baseline: the same daemon with no lists, no mmdb and no bans.
	ns0, err := newNS()
	if err != nil {
		return res, err
	}
	defer ns0.Delete()
	dir0, _ := os.MkdirTemp("", "sstbench-rss0-")
	defer os.RemoveAll(dir0)
	d0, err := startDaemon(ns0, bin, dir0, "[engine]\ngeo_mode = \"monitor\"\n")
	if err != nil {
		return res, err
	}
	rss0, hwm0, err := settle(ns0, d0.cmd.Process.Pid)
	d0.stop()
	if err != nil {
		return res, err
	}

	ns, err := newNS()
	if err != nil {
		return res, err
	}
	defer ns.Delete()
	dir, _ := os.MkdirTemp("", "sstbench-rss-")
	defer os.RemoveAll(dir)
	mmdbPath := ""
	if useMMDB {
		mmdbPath = filepath.Join(geoDir, "dbip-country.mmdb")
	}
	extra := fmt.Sprintf(`[geo]
allow_countries = [%s]
lists_dir = %q
mmdb = %q
min_entries = 0
[engine]
geo_mode = "strict"
`, strings.Join(ccs, ", "), geoDir, mmdbPath)
	d, err := startDaemon(ns, bin, dir, extra)
	if err != nil {
		return res, err
	}
	rssLists, hwmLists, err := settle(ns, d.cmd.Process.Pid)
	d.stop()
	if err != nil {
		return res, err
	}

	// nbans bans in the state DB (foreign 2001:db8::/32 sources), restored
	// into the kernel in one bulk load at start, as after a restart. Feeding
	// them as events would take the post-ban conntrack flush (~25 ms each)
	// times nbans.
	st, err := state.Open(filepath.Join(dir, "state", "sipsentry.db"))
	if err != nil {
		return res, err
	}
	now := time.Now()
	b := &state.Batch{}
	for j := range nbans {
		b.Bans = append(b.Bans, state.Ban{Addr: v6addr(j), Until: now.Add(24 * time.Hour), Offences: 1,
			Reason: "geo strict: failure from outside the allowed countries", Created: now})
	}
	err = st.Apply(context.Background(), b)
	st.Close()
	if err != nil {
		return res, err
	}
	d, err = startDaemon(ns, bin, dir, extra)
	if err != nil {
		return res, err
	}
	defer d.stop()
	pid := d.cmd.Process.Pid
	rssRestored, hwmRestored, err := settle(ns, pid)
	if err != nil {
		return res, err
	}
	if c, _ := setCount(ns, "sipsentry-ban-v6"); c < nbans {
		return res, fmt.Errorf("restored %d of %d bans into the kernel", c, nbans)
	}
	// Then live traffic: feed more InvalidAccountIDs from new foreign
	// sources (geo_mode strict bans each at its first failure), in chunks
	// that wait for the kernel so the AMI queue never overflows.
	const chunk = 500
	start := time.Now()
	for i := nbans; i < nbans+feedN; i += chunk {
		var b bytes.Buffer
		for j := i; j < min(i+chunk, nbans+feedN); j++ {
			b.Write(invalidAccount(netip.AddrPortFrom(v6addr(j), 5060), j))
		}
		d.srv.Send(b.Bytes())
		want := min(i+chunk, nbans+feedN)
		for {
			c, err := setCount(ns, "sipsentry-ban-v6")
			if err != nil {
				return res, err
			}
			if c >= want {
				break
			}
			if time.Since(start) > 15*time.Minute {
				return res, fmt.Errorf("only %d of %d bans after 15 min", c, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	feed := time.Since(start)
	rssBans, hwmBans, err := settle(ns, pid)
	if err != nil {
		return res, err
	}
	cnt, _ := setCount(ns, "sipsentry-ban-v6")
	cc, _ := setCount(ns, "sipsentry-allow-cc-v4")
	cc6, _ := setCount(ns, "sipsentry-allow-cc-v6")
	mb := func(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }
	fmt.Printf("RSS of `sipsentry run` %s (VmRSS, after %v idle; VmHWM = peak)\n", filepath.Base(bin), settleFor)
	fmt.Printf("  baseline (no lists, no mmdb, no bans):         RSS %s  peak %s\n", mb(rss0), mb(hwm0))
	fmt.Printf("  %d countries' lists (%d v4 + %d v6 prefixes in allow-cc), mmdb %q: RSS %s  peak %s  (%.2fx baseline)\n",
		len(ccs), cc, cc6, filepath.Base(mmdbPath), mb(rssLists), mb(hwmLists), float64(rssLists)/float64(rss0))
	fmt.Printf("  + %d bans restored from the state DB at start: RSS %s  peak %s  (%.2fx baseline; goal <= 30 MB: %v)\n",
		nbans, mb(rssRestored), mb(hwmRestored), float64(rssRestored)/float64(rss0), rssRestored <= 30*1024)
	fmt.Printf("  + %d more bans from live AMI events (%d in the kernel set, fed in %v): RSS %s  peak %s  (%.2fx baseline; goal <= 30 MB: %v)\n",
		feedN, cnt, feed.Round(time.Second), mb(rssBans), mb(hwmBans), float64(rssBans)/float64(rss0), rssBans <= 30*1024)
	return rssResult{bin: filepath.Base(bin), idle: rss0, lists: rssLists, restored: rssRestored, live: rssBans,
		idleHWM: hwm0, listsHWM: hwmLists, restHWM: hwmRestored, hwm: hwmBans}, nil
}
