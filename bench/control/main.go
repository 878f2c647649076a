// Command control measures a manual ban through the daemon's control socket
// against the engine's own ban, in the same run, on the real kernel inside a
// network namespace it creates and deletes. A development tool: not shipped,
// not run in CI. It needs root, ip, ipset and iptables.
//
//	go run ./bench/control [-n 200] [-rounds 5] [-bin ./sipsentry]
//
// Three ways to ban one new address, interleaved round by round against the
// same daemon so that the machine's noise falls on all three alike:
//
//   - engine: an AMI InvalidAccountID from a new source (engine.max_failures
//     = 1), one every -pace, timed by the engine itself from the AMI socket
//     read to the kernel set add's return (the "latency" of its "banned"
//     log line);
//   - socket: control.Client.Ban from this process: connect, request, the
//     daemon's engine bans, answer (the daemon answers after the kernel add);
//   - cli: `sipsentry ban ADDR` exec'd, from fork to exit (what an operator
//     or a script waits for);
//   - and, to tell the socket's own cost from the engine's work behind it,
//     a request answered from memory (disallow of an absent entry).
//
// Every address is checked in the kernel's ban set at the end. Addresses are
// from 2001:db8::/32; nothing leaves the namespace.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/bench/internal/benchns"
	"github.com/sipsentry/sipsentry/internal/control"
)

func main() {
	n := flag.Int("n", 200, "bans per way per round")
	rounds := flag.Int("rounds", 5, "rounds (each runs the three ways in turn)")
	bin := flag.String("bin", "", "sipsentry binary (default: go build ./cmd/sipsentry)")
	flag.DurationVar(&pace, "pace", 2*time.Millisecond, "pause between the engine's events, so each is timed alone like a socket or CLI ban (0: one burst of n; the engine's figure then includes the AMI queue)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fatal("control bench: needs root (network namespace, ipset, iptables)")
	}
	if err := run(*bin, *n, *rounds); err != nil {
		fatal("control bench: %v", err)
	}
}

// pace: see the -pace flag.
var pace time.Duration

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func run(bin string, n, rounds int) error {
	dir, err := os.MkdirTemp("", "sipsentry-ctlbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "sipsentry")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/sipsentry").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	ns, err := newNS()
	if err != nil {
		return err
	}
	defer ns.Delete()

	var srv *amitest.Server
	if err := ns.Do(func() error {
		var err error
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		return err
	}
	defer srv.Close()
	sock := filepath.Join(dir, "control.sock")
	cfg := filepath.Join(dir, "sipsentry.toml")
	logPath := filepath.Join(dir, "daemon.log")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `state_dir = %q
[log]
level = "info"
format = "json"
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
[firewall]
mode = "enforce"
backend = "iptables"
[engine]
max_failures = 1
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = ""
[control]
socket = %q
`, filepath.Join(dir, "state"), srv.Addr(), sock), 0o600); err != nil {
		return err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	daemon := exec.Command(bin, "run", "--config", cfg)
	daemon.Stdout, daemon.Stderr = logf, logf
	if err := ns.Do(daemon.Start); err != nil {
		return err
	}
	defer func() {
		daemon.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { daemon.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			daemon.Process.Kill()
			<-done
		}
	}()
	if !srv.WaitLogins(1) {
		return fmt.Errorf("the daemon never logged in (log: %s)", logPath)
	}
	client := &control.Client{Path: sock}
	ctx := context.Background()
	for deadline := time.Now().Add(30 * time.Second); client.Ping(ctx) != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no control socket at %s", sock)
		}
	}

	var engineAddrs []netip.Addr
	var socketLat, cliLat, protoLat []time.Duration
	var all []netip.Addr
	seq := 0
	next := func(way byte) netip.Addr {
		seq++
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, way, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(seq >> 8), byte(seq)})
		all = append(all, a)
		return a
	}
	for r := 0; r < rounds; r++ {
		// engine: one event per new source, spaced by -pace; the engine
		// times each ban itself, from the AMI socket read to the kernel
		// add's return.
		var b bytes.Buffer
		for i := 0; i < n; i++ {
			a := next(0xe0)
			engineAddrs = append(engineAddrs, a)
			b.Write(invalidAccount(a, seq))
			if pace > 0 {
				srv.Send(b.Bytes())
				b.Reset()
				time.Sleep(pace)
			}
		}
		if b.Len() > 0 {
			srv.Send(b.Bytes())
		}
		if err := waitLogged(logPath, len(engineAddrs), 60*time.Second); err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			a := next(0x50)
			t0 := time.Now()
			if _, err := client.Ban(ctx, a, time.Hour, "bench", 0); err != nil {
				return fmt.Errorf("socket ban %s: %w", a, err)
			}
			socketLat = append(socketLat, time.Since(t0))
		}
		// The socket and the protocol alone: a disallow of an entry that
		// does not exist is answered from the engine's memory, with no
		// kernel or DB work.
		for i := 0; i < n; i++ {
			t0 := time.Now()
			err := client.Disallow(ctx, netip.MustParsePrefix("2001:db8:ffff::/48"), 0)
			protoLat = append(protoLat, time.Since(t0))
			if !errors.Is(err, control.ErrNotAllowed) {
				return fmt.Errorf("disallow of an absent entry: %v, want ErrNotAllowed", err)
			}
		}
		for i := 0; i < n; i++ {
			a := next(0xc0)
			cmd := exec.Command(bin, "ban", a.String(), "--for", "1h", "--config", cfg)
			t0 := time.Now()
			if err := ns.Do(cmd.Start); err != nil {
				return err
			}
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("cli ban %s: %w", a, err)
			}
			cliLat = append(cliLat, time.Since(t0))
		}
	}
	engineLat, err := loggedLatencies(logPath)
	if err != nil {
		return err
	}
	if len(engineLat) < len(engineAddrs) {
		return fmt.Errorf("the log holds %d engine ban latencies, want %d", len(engineLat), len(engineAddrs))
	}
	out, err := ns.Exec("ipset", "list", "sipsentry-ban-v6")
	if err != nil {
		return err
	}
	missing := 0
	for _, a := range all {
		if !strings.Contains(out, a.String()+" ") && !strings.Contains(out, a.String()+"\n") {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d bans are not in the kernel set", missing, len(all))
	}
	ep50, ep99 := pct(engineLat, 50), pct(engineLat, 99)
	fmt.Printf("%d rounds x %d bans per way, %d bans all in the kernel set; GOMAXPROCS %d\n", rounds, n, len(all), runtime.GOMAXPROCS(0))
	fmt.Printf("%-44s %10s %10s %12s %12s\n", "way", "p50", "p99", "p50/engine", "p99/engine")
	for _, w := range []struct {
		name string
		lat  []time.Duration
	}{
		{"engine: event -> kernel (its own timing)", engineLat},
		{"socket: control.Client.Ban round trip", socketLat},
		{"socket: protocol only (absent disallow)", protoLat},
		{"cli: `sipsentry ban` fork to exit", cliLat},
	} {
		p50, p99 := pct(w.lat, 50), pct(w.lat, 99)
		fmt.Printf("%-44s %10s %10s %11.1fx %11.1fx\n", w.name, p50.Round(time.Microsecond), p99.Round(time.Microsecond),
			float64(p50)/float64(ep50), float64(p99)/float64(ep99))
	}
	return nil
}

// invalidAccount is a PJSIP InvalidAccountID as Asterisk 22 sends it.
func invalidAccount(src netip.Addr, i int) []byte {
	return fmt.Appendf(nil, "Event: InvalidAccountID\r\nPrivilege: security,all\r\nSystemName: sentrylab\r\n"+
		"EventTV: 2026-11-25T13:12:07.974+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\n"+
		"AccountID: %d\r\nSessionID: 1-%d@bench\r\nLocalAddress: IPV6/UDP/::1/5060\r\n"+
		"RemoteAddress: IPV6/UDP/%s/5060\r\n\r\n", 100+i%50, i, src)
}

// loggedLatencies reads the engine's own ban latencies from its log.
func loggedLatencies(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Msg     string `json:"msg"`
			Addr    string `json:"addr"`
			Latency *int64 `json:"latency"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec.Latency == nil || !strings.Contains(rec.Msg, "banned") {
			continue
		}
		// Only the event-driven bans (2001:db8:e0..): manual bans log no latency, but be sure.
		if a, err := netip.ParseAddr(rec.Addr); err == nil && a.As16()[4] == 0xe0 {
			out = append(out, time.Duration(*rec.Latency))
		}
	}
	return out, sc.Err()
}

func waitLogged(path string, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		got, err := loggedLatencies(path)
		if err != nil {
			return err
		}
		if len(got) >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d engine bans logged after %s, want %d (log: %s)", len(got), limit, want, path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := (len(s)*p + 99) / 100
	return s[max(min(i, len(s))-1, 0)]
}

// ---- namespace helpers

// nsHandle is the command's own namespace (bench/internal/benchns).
type nsHandle = benchns.NS

func newNS() (*nsHandle, error) { return benchns.New("sstctlb-") }
