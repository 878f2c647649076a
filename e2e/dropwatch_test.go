package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
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
		eventually(t, a+" in the kernel allow set while on probation", func() (bool, string) {
			m := setMembers(t, pbx, "sipsentry-allow-v4")
			return slices.Contains(m, a), fmt.Sprint(m)
		})
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
	if m := setMembers(t, pbx, "sipsentry-allow-v4"); slices.Contains(m, "203.0.113.68") || !slices.Contains(m, "203.0.113.66") {
		t.Fatalf("allow set after the outcomes: %v (want .66 learned, .68 gone)", m)
	}
	for len(got) > 0 {
		<-got
	}
	send("203.0.113.68", pushRegister("Bria Push Service", "203.0.113.68"))
	if reached("203.0.113.68", 500*time.Millisecond) {
		t.Fatal("the banned candidate still reaches the SIP port")
	}

	// The state DB: every source with its country, UA and push outcome
	// (flushed every 10 s).
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
			f.Push == state.PushBanned
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
