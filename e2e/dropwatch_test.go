package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/geo/geotest"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/state"
)

// amiBlock returns the first message of a recorded AMI stream that holds
// every one of the words, with its terminating empty line.
func amiBlock(t *testing.T, file string, words ...string) []byte {
	t.Helper()
	for _, b := range bytes.Split(asterisk(t, file), []byte("\r\n\r\n")) {
		ok := true
		for _, w := range words {
			ok = ok && bytes.Contains(b, []byte(w))
		}
		if ok {
			return append(b, "\r\n\r\n"...)
		}
	}
	t.Fatalf("%s has no message with %q", file, words)
	return nil
}

func pushRegister(ua, src string) string {
	return "REGISTER sip:203.0.113.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + src + ":5060;branch=z9hG4bK-1\r\n" +
		"From: <sip:1001@203.0.113.1>;tag=1\r\nTo: <sip:1001@203.0.113.1>\r\n" +
		"Call-ID: 1@" + src + "\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:1001@" + src + ":5060;pn-provider=apns;pn-prid=abc;pn-param=xyz>\r\n" +
		"User-Agent: " + ua + "\r\nExpires: 120\r\nContent-Length: 0\r\n\r\n"
}

// TestDropModeEndToEnd is issue 12 on the real daemon: `sipsentry run` in
// a namespace (enforce, geo_mode drop, allowed country JP), foreign
// senders (CN) in a peer namespace, a UDP listener on the PBX's port 5060
// playing Asterisk, the fake AMI server for the security events.
//
//   - a scanner's dropped REGISTERs are in dropped_sources with country and
//     User-Agent, and counted in sipsentry_dropped_packets_total;
//   - a push server's dropped REGISTER earns a probation: its next REGISTER
//     reaches the listener, `sipsentry allows` material (the engine's allow
//     set) holds it, and the SuccessfulAuth that follows learns it;
//   - another push candidate fails its authentication: banned in the
//     kernel, and its REGISTERs are dropped again.
func TestDropModeEndToEnd(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables")
	bin := buildBinary(t)
	pbx := netnstest.NewNS(t, "dwe2e")
	peer := netnstest.NewNS(t, "dwabr")
	netnstest.Veth(t, pbx, peer, []string{"203.0.113.1/24"}, []string{"203.0.113.66/24", "203.0.113.67/24", "203.0.113.68/24"})
	dir := t.TempDir()

	var srv *amitest.Server
	if err := pbx.Do(func() (err error) {
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var sipLn *net.UDPConn
	if err := pbx.Do(func() (err error) {
		sipLn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("203.0.113.1"), Port: 5060})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sipLn.Close() })
	got := make(chan string, 64) // source addresses of what reached the listener
	go func() {
		buf := make([]byte, 2048)
		for {
			_, from, err := sipLn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			got <- from.IP.String()
		}
	}()
	send := func(src, payload string) {
		t.Helper()
		var c *net.UDPConn
		if err := peer.Do(func() (err error) {
			c, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(src), Port: 5060}, &net.UDPAddr{IP: net.ParseIP("203.0.113.1"), Port: 5060})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	reached := func(src string, wait time.Duration) bool {
		deadline := time.After(wait)
		for {
			select {
			case a := <-got:
				if a == src {
					return true
				}
			case <-deadline:
				return false
			}
		}
	}

	lists := filepath.Join(dir, "lists")
	geotest.WriteLists(t, lists, map[string][]string{"JP": {"198.51.100.0/24"}, "CN": {"203.0.113.0/24"}})
	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "sipsentry.toml")
	group := 6000 + time.Now().Nanosecond()%2000
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[log]
level = "debug"
format = "json"
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
auth = "md5"
ping_interval = "1s"
timeout = "2s"
reconnect_max = "1s"
[geo]
allow_countries = ["JP"]
lists_dir = %q
min_entries = 0
[firewall]
mode = "enforce"
backend = "iptables"
nflog_group = %d
[engine]
geo_mode = "drop"
[push]
hosts = []
# Nothing listens there: PTR look-ups fail at once (no FCrDNS learning).
resolver = "127.0.0.1:1"
probation = "30s"
[metrics]
listen = "127.0.0.1:9468"
[control]
socket = %q
`, stateDir, srv.Addr(), lists, group, filepath.Join(dir, "control.sock")))
	startDaemon(t, pbx, bin, cfg)
	if !srv.WaitLogins(1) {
		t.Fatal("the daemon never logged in to the fake AMI server")
	}
	eventually(t, "the NFLOG copy before the country DROP", func() (bool, string) {
		out, _ := pbx.Exec("iptables", "-S", "SIPSENTRY")
		return strings.Contains(out, fmt.Sprintf("--nflog-prefix sipsentry-geo --nflog-group %d", group)) &&
			strings.Contains(out, "-A SIPSENTRY -j DROP"), out
	})
	eventually(t, "the daemon reading the NFLOG group", func() (bool, string) {
		_, body := nsGet(t, pbx, "http://127.0.0.1:9468/metrics")
		return strings.Contains(body, "sipsentry_dropped_sources "), "no sipsentry_dropped_sources metric yet"
	})

	// A scanner: dropped, seen, never reaches the listener.
	scan := "REGISTER sip:203.0.113.1 SIP/2.0\r\nFrom: <sip:100@203.0.113.1>;tag=1\r\nTo: <sip:100@203.0.113.1>\r\nUser-Agent: friendly-scanner\r\n\r\n"
	for range 3 {
		send("203.0.113.67", scan)
	}
	if reached("203.0.113.67", 300*time.Millisecond) {
		t.Fatal("a foreign scanner reached the SIP port in drop mode")
	}

	// Push servers: the first REGISTER is dropped and earns a probation;
	// the retry (as a push server retries) reaches the listener.
	for _, a := range []string{"203.0.113.66", "203.0.113.68"} {
		eventually(t, a+"'s REGISTER reaching the SIP port on probation", func() (bool, string) {
			send(a, pushRegister("Bria Push Service", a))
			return reached(a, 300*time.Millisecond), "still dropped"
		})
		eventually(t, a+" in the kernel probation set while on probation", func() (bool, string) {
			m := setMembers(t, pbx, "sipsentry-probation-v4")
			return slices.Contains(m, a), fmt.Sprint(m)
		})
		if m := setMembers(t, pbx, "sipsentry-allow-v4"); slices.Contains(m, a) {
			t.Fatalf("%s on probation is in the allow set (which opens RTP too): %v", a, m)
		}
	}
	// A probation opens the UDP SIP ports only: the same address's packet to
	// an RTP port is still dropped (the control: the SIP port just answered).
	var rtpLn *net.UDPConn
	if err := pbx.Do(func() (err error) {
		rtpLn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("203.0.113.1"), Port: 10000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rtpLn.Close()
	var rtp *net.UDPConn
	if err := peer.Do(func() (err error) {
		rtp, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("203.0.113.66"), Port: 10002}, &net.UDPAddr{IP: net.ParseIP("203.0.113.1"), Port: 10000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		rtp.Write([]byte("rtp"))
	}
	rtp.Close()
	rtpLn.SetReadDeadline(time.Now().Add(time.Second))
	if n, from, err := rtpLn.ReadFromUDP(make([]byte, 64)); err == nil {
		t.Fatalf("an RTP packet from %s (on probation) reached port 10000 (%d bytes): a probation must open SIP only", from, n)
	}

	// Asterisk authenticates .66 and refuses .68.
	srv.Send(rewriteAMI(amiBlock(t, "ami-s3-register-ok-push.raw", "Event: SuccessfulAuth", "127.0.0.31"),
		[2]string{"203.0.113.31", "203.0.113.66"}))
	srv.Send(rewriteAMI(amiBlock(t, "ami-s2-wrong-password.raw", "Event: ChallengeResponseFailed"),
		[2]string{"203.0.113.11", "203.0.113.68"}))
	eventually(t, "the failed candidate banned in the kernel", func() (bool, string) {
		m := setMembers(t, pbx, "sipsentry-ban-v4")
		return slices.Contains(m, "203.0.113.68"), fmt.Sprint(m)
	})
	eventually(t, "the learned push server in the allow set", func() (bool, string) {
		m := setMembers(t, pbx, "sipsentry-allow-v4")
		return slices.Contains(m, "203.0.113.66"), fmt.Sprint(m)
	})
	if m := setMembers(t, pbx, "sipsentry-allow-v4"); slices.Contains(m, "203.0.113.68") {
		t.Fatalf("allow set after the outcomes: %v (want .68 not there)", m)
	}
	if m := setMembers(t, pbx, "sipsentry-probation-v4"); slices.Contains(m, "203.0.113.68") {
		t.Fatalf("probation set after .68's failure: %v (want its admission revoked)", m)
	}
	for len(got) > 0 {
		<-got
	}
	send("203.0.113.68", pushRegister("Bria Push Service", "203.0.113.68"))
	if reached("203.0.113.68", 500*time.Millisecond) {
		t.Fatal("the banned candidate still reaches the SIP port")
	}

	// The state DB: every source with its country, UA and push outcome
	// (flushed every 10 s); the banned candidate's last REGISTER was
	// dropped by the ban rule's copy, the first ones by the country rule's.
	var rows []state.DroppedSource
	eventually(t, "the dropped sources in the state DB", func() (bool, string) {
		st, err := state.OpenReadOnly(state.Path(stateDir))
		if err != nil {
			return false, err.Error()
		}
		defer st.Close()
		rows, err = st.DroppedSources(context.Background(), time.Time{})
		if err != nil {
			return false, err.Error()
		}
		by := map[netip.Addr]state.DroppedSource{}
		for _, r := range rows {
			by[r.Addr] = r
		}
		s, p, f := by[netip.MustParseAddr("203.0.113.67")], by[netip.MustParseAddr("203.0.113.66")], by[netip.MustParseAddr("203.0.113.68")]
		ok := s.Country == "CN" && s.UserAgent == "friendly-scanner" && s.Packets >= 3 && slices.Equal(s.Methods, []string{"REGISTER"}) &&
			p.Push == state.PushLearned && len(p.PushParams) == 3 && p.UserAgent == "Bria Push Service" &&
			f.Push == state.PushBanned && slices.Contains(f.Reasons, "ban") && slices.Contains(f.Reasons, "geo")
		return ok, fmt.Sprintf("%+v", rows)
	})
	_, body := nsGet(t, pbx, "http://127.0.0.1:9468/metrics")
	for _, want := range []string{`sipsentry_dropped_packets_total{country="CN",reason="geo"}`, "sipsentry_push_probations_total 2",
		`sipsentry_push_candidate_outcomes_total{outcome="learned_auth"} 1`, `sipsentry_push_candidate_outcomes_total{outcome="banned"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// floodIPv6 sends UDP REGISTERs to [dst]:5060 from `sources` spoofed
// sources in 2001:db8:ff::/96 through a raw socket opened in ns, for d, as
// fast as it can; it returns how many it sent.
func floodIPv6(t *testing.T, ns *netnstest.NS, dst netip.Addr, sources int, d time.Duration) int {
	t.Helper()
	var fd int
	if err := ns.Do(func() (err error) {
		fd, err = syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	payload := pushRegister("friendly-scanner", "2001:db8:ff::1")
	pkt := make([]byte, 48+len(payload))
	binary.BigEndian.PutUint32(pkt[0:], 0x60000000)
	binary.BigEndian.PutUint16(pkt[4:], uint16(8+len(payload)))
	pkt[6], pkt[7] = 17, 64
	src := netip.MustParseAddr("2001:db8:ff::").As16()
	copy(pkt[8:], src[:])
	d16 := dst.As16()
	copy(pkt[24:], d16[:])
	binary.BigEndian.PutUint16(pkt[40:], 5070)
	binary.BigEndian.PutUint16(pkt[42:], 5060)
	binary.BigEndian.PutUint16(pkt[44:], uint16(8+len(payload)))
	copy(pkt[48:], payload)
	sa := &syscall.SockaddrInet6{Addr: d16}
	end := time.Now().Add(d)
	n := 0
	for ; n%1024 != 0 || time.Now().Before(end); n++ {
		binary.BigEndian.PutUint32(pkt[20:], uint32(n%sources))
		if err := syscall.Sendto(fd, pkt, 0, sa); err != nil && err != syscall.ENOBUFS {
			t.Fatal(err)
		}
	}
	return n
}

// procRSS reads a process's VmRSS or VmHWM in bytes.
func procRSS(t *testing.T, pid int, field string) uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestDropModeFloodKeepsAMI: while 100,000 spoofed foreign sources flood
// the PBX's SIP port for 10 s (all dropped by the country rule, copies
// capped at 1000/s by the kernel), the daemon reads and aggregates the
// copies, handles every AMI security event of a scan (none dropped, the
// scanner banned), and its RSS stays within the engine's flood budget
// (100 MB, issue 11).
func TestDropModeFloodKeepsAMI(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables", "ip6tables")
	if testing.Short() {
		t.Skip("a 10 s flood; run without -short")
	}
	bin := buildBinary(t)
	pbx := netnstest.NewNS(t, "dwfld")
	peer := netnstest.NewNS(t, "dwfls")
	netnstest.Veth(t, pbx, peer, []string{"203.0.113.1/24", "2001:db8::1/64"}, []string{"203.0.113.66/24", "2001:db8::66/64"})
	dir := t.TempDir()
	var srv *amitest.Server
	if err := pbx.Do(func() (err error) {
		srv, err = amitest.Start(amitest.Options{Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	lists := filepath.Join(dir, "lists")
	geotest.WriteLists(t, lists, map[string][]string{"JP": {"198.51.100.0/24"}, "CN": {"203.0.113.0/24", "2001:db8::/32"}})
	stateDir := filepath.Join(dir, "state")
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeConfig(t, cfg, fmt.Sprintf(`state_dir = %q
[ami]
address = %q
username = "sentry"
secret = "sentry-secret"
ping_interval = "1s"
timeout = "2s"
reconnect_max = "1s"
[geo]
allow_countries = ["JP"]
lists_dir = %q
min_entries = 0
[firewall]
mode = "enforce"
backend = "iptables"
nflog_group = %d
[engine]
geo_mode = "drop"
[push]
hosts = []
resolver = "127.0.0.1:1"
[metrics]
listen = "127.0.0.1:9468"
[control]
socket = %q
`, stateDir, srv.Addr(), lists, 6000+time.Now().Nanosecond()%2000, filepath.Join(dir, "control.sock")))
	d := startDaemon(t, pbx, bin, cfg)
	if !srv.WaitLogins(1) {
		t.Fatal("the daemon never logged in to the fake AMI server")
	}
	eventually(t, "the daemon reading the NFLOG group", func() (bool, string) {
		_, body := nsGet(t, pbx, "http://127.0.0.1:9468/metrics")
		return strings.Contains(body, "sipsentry_dropped_sources "), "no sipsentry_dropped_sources metric yet"
	})
	pid := d.cmd.Process.Pid
	rss0 := procRSS(t, pid, "VmRSS:")

	scan := rewriteAMI(asterisk(t, "ami-s1-scanner-register.raw"))
	sent := make(chan int, 1)
	go func() { sent <- floodIPv6(t, peer, netip.MustParseAddr("2001:db8::1"), 100_000, 10*time.Second) }()
	// The scan's 100 security events arrive in the middle of the flood.
	time.Sleep(3 * time.Second)
	srv.Send(scan)
	n := <-sent
	metric := func(body, name string) float64 {
		var sum float64
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, name) {
				f := strings.Fields(l)
				v, _ := strconv.ParseFloat(f[len(f)-1], 64)
				sum += v
			}
		}
		return sum
	}
	var body string
	eventually(t, "every AMI event of the scan handled and the scanner banned", func() (bool, string) {
		_, body = nsGet(t, pbx, "http://127.0.0.1:9468/metrics")
		ok := metric(body, "sipsentry_ami_events_total{type=\"InvalidAccountID\"}") == 50 &&
			metric(body, "sipsentry_ami_events_total{type=\"ChallengeSent\"}") == 50 &&
			slices.Contains(setMembers(t, pbx, "sipsentry-ban-v4"), "203.0.113.11")
		return ok, "metrics: " + fmt.Sprint(metric(body, "sipsentry_ami_events_total"))
	})
	if v := metric(body, "sipsentry_ami_events_dropped_total"); v != 0 {
		t.Errorf("%v AMI events dropped during the flood", v)
	}
	dropped := metric(body, `sipsentry_dropped_packets_total{country="CN",reason="geo"}`)
	sources := metric(body, "sipsentry_dropped_sources ")
	peak, rss := procRSS(t, pid, "VmHWM:"), procRSS(t, pid, "VmRSS:")
	t.Logf("flood: %d packets sent in 10 s (%.0f/s); copies read %v (kernel limit 1000/s), sources %v, overruns %v; daemon RSS %.1f MB before, %.1f MB after, peak %.1f MB",
		n, float64(n)/10, dropped, sources, metric(body, "sipsentry_nflog_overruns_total"), float64(rss0)/1e6, float64(rss)/1e6, float64(peak)/1e6)
	if dropped == 0 || sources == 0 {
		t.Fatal("the flood's copies were not read")
	}
	if dropped > 1000*12+200 {
		t.Errorf("%v copies read in ~10 s: more than the kernel limit lets through", dropped)
	}
	if peak > 100<<20 {
		t.Errorf("daemon peak RSS %.1f MB during the flood, budget 100 MB", float64(peak)/1e6)
	}
}
