package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// udpSink receives on :5060 inside a namespace and remembers the payloads.
type udpSink struct {
	conn net.PacketConn
	mu   sync.Mutex
	got  map[string]bool
}

func newUDPSink(t *testing.T, ns *netnstest.NS) *udpSink {
	t.Helper()
	s := &udpSink{got: map[string]bool{}}
	if err := ns.Do(func() error {
		var err error
		s.conn, err = net.ListenPacket("udp4", ":5060")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := s.conn.ReadFrom(buf)
			if err != nil {
				return
			}
			s.mu.Lock()
			s.got[string(buf[:n])] = true
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *udpSink) has(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[token]
}

var probeSeq int

// reaches sends three UDP packets to dst:5060 from src inside ns and
// reports whether any arrived within two seconds.
func reaches(t *testing.T, sink *udpSink, ns *netnstest.NS, src, dst string) bool {
	t.Helper()
	probeSeq++
	token := fmt.Sprintf("probe-%d-%s", probeSeq, src)
	var c *net.UDPConn
	if err := ns.Do(func() error {
		var err error
		c, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(src), 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(dst), 5060)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if i < 3 {
			c.Write([]byte(token))
		}
		if sink.has(token) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// jpList writes jp-ipv4.txt with the phone's /24 and 99 other /24s, and
// jp-ipv6.txt with 60 /48s: both above the default geo.min_entries.
func jpList(t *testing.T, dir string) string {
	t.Helper()
	var v4, v6 strings.Builder
	v4.WriteString("198.51.100.0/24\n")
	for i := 0; i < 99; i++ {
		fmt.Fprintf(&v4, "100.64.%d.0/24\n", 2*i) // not adjacent: 100 entries
	}
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&v6, "2001:db8:%x::/48\n", 2*i)
	}
	if err := os.WriteFile(filepath.Join(dir, "jp-ipv6.txt"), []byte(v6.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "jp-ipv4.txt"), []byte(v4.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return v4.String()
}

// TestRefusedLocalListKeepsPhonesFlowing is #10's critical finding on the
// real kernel: with enforce + geo_mode "drop", an empty, a 10-line and an
// HTML jp-ipv4.txt in geo.lists_dir followed by SIGHUP leave the
// in-country phone's packets flowing (the allow-cc set keeps its prefix),
// and so does a restart with the HTML file still there. A sender outside
// the list is dropped throughout, so "flowing" is the list's doing.
func TestRefusedLocalListKeepsPhonesFlowing(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables")
	bin := buildBinary(t)
	host := netnstest.NewNS(t, "gg")
	peer := netnstest.NewNS(t, "ggp")
	netnstest.Veth(t, host, peer, []netnstest.Addr{"198.51.100.1/24", "203.0.113.1/24"},
		[]netnstest.Addr{"198.51.100.21/24", "203.0.113.50/24"})
	var srv *amitest.Server
	if err := host.Do(func() error {
		var err error
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	sink := newUDPSink(t, host)

	dir := t.TempDir()
	lists := filepath.Join(dir, "lists")
	if err := os.MkdirAll(lists, 0o755); err != nil {
		t.Fatal(err)
	}
	good := jpList(t, lists)
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
[geo]
allow_countries = ["JP"]
lists_dir = %q
[firewall]
mode = "enforce"
backend = "iptables"
[engine]
geo_mode = "drop"
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = "127.0.0.1:9468"
[control]
socket = %q
`, filepath.Join(dir, "state"), srv.Addr(), lists, filepath.Join(dir, "control.sock")))

	// refusals counts jp-ipv4's refusals from the daemon's metrics (the log
	// rate-limits a repeating line, so it cannot be counted there).
	refusals := func() (int, string) {
		code, body := nsGet(t, host, "http://127.0.0.1:9468/metrics")
		if code != 200 {
			return -1, fmt.Sprintf("/metrics: HTTP %d", code)
		}
		n := 0
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "sipsentry_geo_list_refused_total{") && strings.Contains(l, `list="jp-ipv4"`) {
				var v float64
				fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v)
				n += int(v)
			}
		}
		return n, fmt.Sprintf("%d refusals counted", n)
	}
	logHas := func(p *daemonProc, what string) int {
		b, _ := os.ReadFile(p.log)
		return strings.Count(string(b), what)
	}
	phoneFlows := func(when string) {
		t.Helper()
		eventually(t, "the phone's prefix in allow-cc "+when, func() (bool, string) {
			got := setMembers(t, host, "sipsentry-allow-cc-v4")
			return slices.Contains(got, "198.51.100.0/24"), fmt.Sprintf("allow-cc-v4 has %d members", len(got))
		})
		if !reaches(t, sink, peer, "198.51.100.21", "198.51.100.1") {
			t.Errorf("%s: the in-country phone's packets are dropped", when)
		}
		if reaches(t, sink, peer, "203.0.113.50", "203.0.113.1") {
			t.Errorf("%s: a sender outside the allowed list gets through: the drop is not in force", when)
		}
	}

	d := startDaemon(t, host, bin, cfg)
	eventually(t, "the firewall up", func() (bool, string) {
		return logHas(d, "firewall up") > 0, "no \"firewall up\" in the daemon log"
	})
	phoneFlows("at start")

	path := filepath.Join(lists, "jp-ipv4.txt")
	ten := strings.Join(strings.SplitN(good, "\n", 11)[:10], "\n") + "\n"
	for i, tc := range []struct{ name, body string }{
		{"empty", ""},
		{"10 lines", ten},
		{"html", "<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>\n"},
	} {
		if err := os.WriteFile(path, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the "+tc.name+" list refused after SIGHUP", func() (bool, string) {
			n, detail := refusals()
			return n > i, detail
		})
		time.Sleep(200 * time.Millisecond) // the reload's kernel sync runs right after the refusal
		phoneFlows("after SIGHUP with the " + tc.name + " jp-ipv4.txt")
	}

	// Restart with the HTML file still in lists_dir.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := d.wait(); err != nil {
		t.Logf("daemon exit: %v", err)
	}
	d2 := startDaemon(t, host, bin, cfg)
	eventually(t, "the firewall up after the restart", func() (bool, string) {
		return logHas(d2, "firewall up") > 0, "no \"firewall up\" in the daemon log"
	})
	if logHas(d2, "geo: list refused") == 0 {
		t.Error("the restart did not log the refused list")
	}
	if n, detail := refusals(); n != 1 {
		t.Errorf("after the restart: %s, want the HTML file's 1", detail)
	}
	phoneFlows("after a restart with the HTML jp-ipv4.txt")
}
