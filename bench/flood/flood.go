// Command flood is a development tool (not shipped): it floods the real
// `sipsentry run` binary, inside a network namespace with the iptables
// backend, with generated security events from a fake Asterisk (ami/amitest)
// — N distinct sources × F failures at a set rate — and reports how many
// sources crossed a threshold against how many are in the kernel's ban set
// (they must be equal), AMI events dropped, the daemon's RSS every second
// (peak), its CPU, and the socket → kernel latency from its metrics.
//
//	go run ./bench/flood [-sources 100000] [-fails 6] [-rate 10000] [-bin ./sipsentry]
//	                     [-engine 'max_sources = 50000'] [-wait 120s]
//
// It needs root, ip, ipset and iptables. No packet leaves the namespace: the
// sources (2001:db8::/32) only go into its sets. See README.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/ami/amitest"
)

// namespace is what the flood needs of a network namespace
// (internal/netnstest.NS in the test, nsHandle in the command).
type namespace interface {
	Do(f func() error) error
	Exec(prog string, args ...string) (string, error)
}

type options struct {
	sources  int
	fails    int     // failures per source
	rate     float64 // events per second
	bin      string  // the sipsentry binary
	geoDir   string  // ../shared/testdata/geo (the JP lists the config loads)
	engine   string  // extra lines for the [engine] table
	wait     time.Duration
	dir      string // work directory (config, state, daemon log)
	progress io.Writer
	// tick is how often the fake Asterisk writes what is due: events then
	// arrive in bursts of rate × tick, and the last of a burst waits for
	// the others (part of the socket → kernel figure).
	tick time.Duration
	// profileDir, when set, receives cpu.pb.gz, heap-peak.pb.gz and heap-end.pb.gz.
	profileDir string
}

// Engine thresholds the flood config uses (the defaults): a source is over
// the threshold once maxFailures of its failures were sent within findTime.
const (
	maxFailures = 5
	findTime    = 10 * time.Minute
)

type result struct {
	sources, overThreshold, inKernel, missing int
	sent                                      int
	sendSeconds                               float64
	dropped, amiEvents, bans                  float64
	peakRSSkB, hwmkB                          int
	rssSamples                                []int // kB, one a second
	cpuPercent                                float64
	// runWaitSeconds: time the daemon's threads were runnable but waited
	// for a CPU (the kernel's schedstat) over the flood: what a busy
	// machine adds to every latency figure, whatever the daemon does.
	runWaitSeconds, cpuSeconds float64
	p50, p99                   float64 // seconds, socket → kernel (daemon histogram)
	latencyCount               float64
	missingSample              []string
	daemonLog                  string
}

func (r result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sources %d × failures, sent %d events in %.1fs (%.0f/s)\n", r.sources, r.sent, r.sendSeconds, float64(r.sent)/r.sendSeconds)
	fmt.Fprintf(&b, "over threshold %d, in the kernel ban set %d, missing %d\n", r.overThreshold, r.inKernel, r.missing)
	fmt.Fprintf(&b, "AMI events received %.0f, dropped at the queue %.0f; ban decisions %.0f\n", r.amiEvents, r.dropped, r.bans)
	fmt.Fprintf(&b, "daemon RSS peak %.1f MB (VmHWM %.1f MB), CPU %.0f%% of one core over the flood\n", float64(r.peakRSSkB)/1024, float64(r.hwmkB)/1024, r.cpuPercent)
	fmt.Fprintf(&b, "daemon threads waited %.1f s for a CPU (run queue) while running %.1f s\n", r.runWaitSeconds, r.cpuSeconds)
	fmt.Fprintf(&b, "socket → kernel latency (daemon histogram, %.0f bans): p50 %s, p99 %s\n", r.latencyCount, fmtSec(r.p50), fmtSec(r.p99))
	return b.String()
}

func fmtSec(s float64) string {
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return "n/a"
	}
	return time.Duration(s * float64(time.Second)).String()
}

// source i's address: 2001:db8::/32 with i in the low 32 bits.
func source(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0x01, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
}

// appendFailure appends one PJSIP ChallengeResponseFailed of source i, as
// Asterisk 22 writes it (header order of the recordings), with a nonce of
// Asterisk's form issued a second before.
func appendFailure(b []byte, i, round int, at time.Time) []byte {
	b = append(b, "Event: ChallengeResponseFailed\r\nPrivilege: security,all\r\nSystemName: floodlab\r\nEventTV: "...)
	b = at.UTC().AppendFormat(b, "2006-01-02T15:04:05.000-0700")
	b = append(b, "\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: 1001\r\nSessionID: flood-"...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(round), 10)
	b = append(b, "\r\nLocalAddress: IPV6/UDP/2001:db8::1/5060\r\nRemoteAddress: IPV6/UDP/"...)
	b = source(i).AppendTo(b)
	b = append(b, "/5060\r\nChallenge: "...)
	b = strconv.AppendInt(b, at.Unix()-1, 10)
	b = append(b, "/0123456789abcdef0123456789abcdef\r\nResponse: fedcba9876543210fedcba9876543210\r\nExpectedResponse: \r\n\r\n"...)
	return b
}

// daemon is `sipsentry run` inside the namespace.
type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func (d *daemon) stop() error {
	d.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-d.done:
		return err
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		return errors.New("daemon did not stop within 30s; killed")
	}
}

func writeConfig(o options, amiAddr string) (string, error) {
	cfg := filepath.Join(o.dir, "sipsentry.toml")
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
[geo]
allow_countries = ["JP"]
lists_dir = %q
mmdb = ""
min_entries = 0
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = "127.0.0.1:9468"
pprof = %t
[control]
socket = %q
[engine]
geo_mode = "drop"
%s
`, filepath.Join(o.dir, "state"), amiAddr, o.geoDir, o.profileDir != "", filepath.Join(o.dir, "control.sock"), o.engine)
	return cfg, os.WriteFile(cfg, []byte(text), 0o600)
}

// fetchProfile saves /debug/pprof/<what> (metrics.pprof) to file.
func fetchProfile(c *http.Client, what, file string) error {
	long := *c
	long.Timeout = 0 // a CPU profile takes as long as it is asked to
	resp, err := long.Get("http://127.0.0.1:9468/debug/pprof/" + what)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", what, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// metricsClient reaches the daemon's /metrics inside the namespace: each
// connection is dialled from a thread that joined it.
func metricsClient(ns namespace) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}}
}

// scrape returns the metric samples (name{labels} → value) of /metrics.
func scrape(c *http.Client) (map[string]float64, error) {
	resp, err := c.Get("http://127.0.0.1:9468/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err == nil {
			out[l[:i]] = v
		}
	}
	return out, sc.Err()
}

// sum adds the samples of name (any labels).
func sum(m map[string]float64, name string) float64 {
	s := 0.0
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// quantile estimates q of a Prometheus histogram by linear interpolation
// inside the bucket (as histogram_quantile does).
func quantile(m map[string]float64, name string, q float64) (float64, float64) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range m {
		rest, ok := strings.CutPrefix(k, name+"_bucket{le=\"")
		if !ok {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(rest, "\"}"), 64)
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v})
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return math.NaN(), 0
	}
	total := bs[len(bs)-1].n
	rank := q * total
	prevLe, prevN := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return prevLe, total // beyond the last finite bucket: its bound
			}
			return prevLe + (b.le-prevLe)*(rank-prevN)/max(b.n-prevN, 1), total
		}
		prevLe, prevN = b.le, b.n
	}
	return prevLe, total
}

func procStatus(pid int) (rss, hwm int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
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
	return rss, hwm
}

// schedstat sums the run time and the run-queue wait (ns) of pid's threads
// (/proc/PID/task/*/schedstat: "run wait timeslices").
func schedstat(pid int) (run, wait int64) {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			r, _ := strconv.ParseInt(f[0], 10, 64)
			w, _ := strconv.ParseInt(f[1], 10, 64)
			run, wait = run+r, wait+w
		}
	}
	return run, wait
}

// cpuTicks is utime + stime of pid (clock ticks, 100 a second on Linux).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return u + st
}

const clockTicks = 100

// banSet lists the v6 ban set's members.
func banSet(ns namespace) (map[netip.Addr]bool, error) {
	out, err := ns.Exec("ipset", "list", "sipsentry-ban-v6")
	if err != nil {
		return nil, err
	}
	_, members, ok := strings.Cut(out, "Members:\n")
	if !ok {
		return nil, fmt.Errorf("ipset list sipsentry-ban-v6: no Members section")
	}
	got := map[netip.Addr]bool{}
	for _, line := range strings.Split(members, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		p := f[0]
		if a, err := netip.ParseAddr(p); err == nil {
			got[a] = true
		} else if pf, err := netip.ParsePrefix(p); err == nil {
			got[pf.Addr()] = true
		}
	}
	return got, nil
}

// setCount is the ban set's "Number of entries" (cheap: no member list).
func setCount(ns namespace) int {
	out, err := ns.Exec("ipset", "list", "-t", "sipsentry-ban-v6")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "Number of entries: "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return -1
}

// run starts the fake Asterisk and the daemon in ns, floods, waits for the
// bans and measures.
func run(ctx context.Context, ns namespace, o options) (res result, err error) {
	logf := func(format string, args ...any) {
		if o.progress != nil {
			fmt.Fprintf(o.progress, format+"\n", args...)
		}
	}
	res.sources = o.sources
	var srv *amitest.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		return res, err
	}
	defer srv.Close()
	cfg, err := writeConfig(o, srv.Addr())
	if err != nil {
		return res, err
	}
	res.daemonLog = filepath.Join(o.dir, "daemon.log")
	lf, err := os.Create(res.daemonLog)
	if err != nil {
		return res, err
	}
	defer lf.Close()
	cmd := exec.Command(o.bin, "run", "--config", cfg)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := ns.Do(cmd.Start); err != nil {
		return res, err
	}
	d := &daemon{cmd: cmd, log: res.daemonLog, done: make(chan error, 1)}
	go func() { d.done <- cmd.Wait() }()
	defer func() {
		if serr := d.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	logged := make(chan bool, 1)
	go func() { logged <- srv.WaitLogins(1) }()
	select {
	case ok := <-logged:
		if !ok {
			return res, fmt.Errorf("daemon did not log in; see %s", res.daemonLog)
		}
	case err := <-d.done:
		d.done <- err
		return res, fmt.Errorf("daemon exited before logging in (%v); see %s", err, res.daemonLog)
	case <-time.After(60 * time.Second):
		return res, fmt.Errorf("daemon did not log in within 60s; see %s", res.daemonLog)
	}
	mc := metricsClient(ns)
	// The firewall is up once metrics answer; give it a moment either way.
	for i := 0; i < 100; i++ {
		if _, err := scrape(mc); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	pid := cmd.Process.Pid

	// RSS every second until the end.
	var mu sync.Mutex
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			rss, _ := procStatus(pid)
			mu.Lock()
			res.rssSamples = append(res.rssSamples, rss)
			res.peakRSSkB = max(res.peakRSSkB, rss)
			mu.Unlock()
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	cpu0, wall0 := cpuTicks(pid), time.Now()
	run0, wait0 := schedstat(pid)
	total := o.sources * o.fails
	var profiles sync.WaitGroup
	defer profiles.Wait()
	if o.profileDir != "" {
		// One CPU profile over the flood and the ban round after it.
		secs := int(float64(total)/o.rate) + 20
		profiles.Add(1)
		go func() {
			defer profiles.Done()
			if err := fetchProfile(mc, fmt.Sprintf("profile?seconds=%d", secs), filepath.Join(o.profileDir, "cpu.pb.gz")); err != nil {
				logf("cpu profile: %v", err)
			}
		}()
	}
	peakProfiled := 0
	logf("flood: %d sources × %d failures = %d events at %.0f/s", o.sources, o.fails, total, o.rate)
	roundEnd := make([]time.Time, o.fails)
	roundStart := make([]time.Time, o.fails)
	start := time.Now()
	var buf []byte
	tick := time.NewTicker(o.tick)
	sent := 0
	lastLog := start
	for sent < total {
		select {
		case <-ctx.Done():
			tick.Stop()
			return res, ctx.Err()
		case <-tick.C:
		}
		now := time.Now()
		target := min(total, int(o.rate*now.Sub(start).Seconds())+1)
		buf = buf[:0]
		for ; sent < target && len(buf) < 4<<20; sent++ {
			round, i := sent/o.sources, sent%o.sources
			if i == 0 {
				roundStart[round] = now
			}
			buf = appendFailure(buf, i, round, now)
			if i == o.sources-1 {
				roundEnd[round] = now
			}
		}
		srv.Send(buf)
		if now.Sub(lastLog) >= 10*time.Second {
			lastLog = now
			rss, _ := procStatus(pid)
			logf("  %ds: sent %d, daemon RSS %.1f MB, kernel set %d", int(now.Sub(start).Seconds()), sent, float64(rss)/1024, setCount(ns))
			if o.profileDir != "" && rss > peakProfiled {
				peakProfiled = rss
				if err := fetchProfile(mc, "heap", filepath.Join(o.profileDir, "heap-peak.pb.gz")); err != nil {
					logf("heap profile: %v", err)
				}
			}
		}
	}
	tick.Stop()
	res.sent = sent
	res.sendSeconds = time.Since(start).Seconds()

	// Over the threshold: maxFailures of a source's failures within
	// findTime. Rounds go through the sources in order, so source i's
	// failures k and k+maxFailures-1 are at most roundEnd[k+4] -
	// roundStart[k] apart.
	if o.fails >= maxFailures {
		for k := 0; k+maxFailures-1 < o.fails; k++ {
			if roundEnd[k+maxFailures-1].Sub(roundStart[k]) <= findTime {
				res.overThreshold = o.sources
				break
			}
		}
		if res.overThreshold == 0 {
			return res, fmt.Errorf("rate %.0f/s too low: %d failures of a source span more than find_time (%s)", o.rate, maxFailures, findTime)
		}
	}

	// Wait for the bans: until the set holds every over-threshold source,
	// or stops growing for 10 s, or o.wait.
	deadline := time.Now().Add(o.wait)
	last, lastChange := -1, time.Now()
	for time.Now().Before(deadline) {
		n := setCount(ns)
		if n >= res.overThreshold {
			break
		}
		if n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) > 10*time.Second {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	res.cpuPercent = float64(cpuTicks(pid)-cpu0) / clockTicks / time.Since(wall0).Seconds() * 100
	run1, wait1 := schedstat(pid)
	res.runWaitSeconds, res.cpuSeconds = float64(wait1-wait0)/1e9, float64(run1-run0)/1e9
	if o.profileDir != "" {
		if err := fetchProfile(mc, "heap", filepath.Join(o.profileDir, "heap-end.pb.gz")); err != nil {
			logf("heap profile: %v", err)
		}
	}
	close(stopSampling)
	<-sampled
	_, res.hwmkB = procStatus(pid)

	m, err := scrape(mc)
	if err != nil {
		return res, fmt.Errorf("metrics: %w", err)
	}
	res.dropped = sum(m, "sipsentry_ami_events_dropped_total")
	res.amiEvents = sum(m, "sipsentry_ami_events_total")
	res.bans = m[`sipsentry_decisions_total{kind="ban"}`]
	res.p50, res.latencyCount = quantile(m, "sipsentry_event_to_kernel_seconds", 0.5)
	res.p99, _ = quantile(m, "sipsentry_event_to_kernel_seconds", 0.99)

	got, err := banSet(ns)
	if err != nil {
		return res, err
	}
	for i := 0; i < o.sources; i++ {
		if got[source(i)] {
			res.inKernel++
		} else {
			res.missing++
			if len(res.missingSample) < 5 {
				res.missingSample = append(res.missingSample, source(i).String())
			}
		}
	}
	return res, nil
}
