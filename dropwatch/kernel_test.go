package dropwatch

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/sipsentry/sipsentry/dropwatch/nflog"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/state"
)

// nsGate admits a probation by adding the address to an ipset in the test
// namespace with a kernel timeout, the way the daemon's gate uses the
// firewall's allow set.
type nsGate struct {
	ns  *netnstest.NS
	set string
	rec *recorder
}

func (g nsGate) AdmitSIP(_ context.Context, a netip.Addr, d time.Duration) error {
	_, err := g.ns.Exec("ipset", "add", g.set, a.String(), "timeout", strconv.Itoa(int(d.Seconds())), "-exist")
	g.rec.add("admit " + a.String())
	return err
}

func (g nsGate) Revoke(_ context.Context, a netip.Addr) error {
	g.rec.add("revoke " + a.String())
	_, err := g.ns.Exec("ipset", "del", g.set, a.String(), "-exist")
	return err
}

// kernelWorld is a PBX namespace whose SIP port drops every source not in
// its allow set, after an NFLOG copy (the pair of rules firewall/iptables
// installs), and a peer namespace "abroad" with three addresses.
type kernelWorld struct {
	pbx, peer *netnstest.NS
	set       string
	listener  *net.UDPConn
	group     uint16
	nsFD      netns.NsHandle
}

func newKernelWorld(t *testing.T) *kernelWorld {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "iptables", "ipset")
	k := &kernelWorld{pbx: netnstest.NewNS(t, "dwpbx"), peer: netnstest.NewNS(t, "dwpeer")}
	netnstest.Veth(t, k.pbx, k.peer, []string{"203.0.113.1/24"}, []string{"203.0.113.66/24", "203.0.113.67/24", "203.0.113.68/24"})
	k.set = netnstest.UniqueName("dwal")
	k.group = uint16(6000 + time.Now().Nanosecond()%1000)
	chain := strings.ToUpper(netnstest.UniqueName("DW"))
	k.pbx.MustExec("ipset", "create", k.set, "hash:ip", "timeout", "0")
	k.pbx.MustExec("iptables", "-N", chain)
	k.pbx.MustExec("iptables", "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", chain)
	k.pbx.MustExec("iptables", "-A", chain, "-m", "set", "--match-set", k.set, "src", "-j", "RETURN")
	k.pbx.MustExec("iptables", "-A", chain, "-m", "limit", "--limit", "1000/sec", "--limit-burst", "200", "-j", "NFLOG",
		"--nflog-prefix", "sipsentry-geo", "--nflog-group", strconv.Itoa(int(k.group)), "--nflog-size", "512")
	k.pbx.MustExec("iptables", "-A", chain, "-j", "DROP")
	if err := k.pbx.Do(func() (err error) {
		k.listener, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("203.0.113.1"), Port: 5060})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.listener.Close() })
	h, err := netns.GetFromName(k.pbx.Name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	k.nsFD = h
	return k
}

// send sends payload from src:5060 in the peer namespace.
func (k *kernelWorld) send(t *testing.T, src string, payload string) {
	t.Helper()
	var c *net.UDPConn
	if err := k.peer.Do(func() (err error) {
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

// received reports whether the PBX's listener gets a packet from src within wait.
func (k *kernelWorld) received(src string, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	buf := make([]byte, 2048)
	for {
		_ = k.listener.SetReadDeadline(deadline)
		_, from, err := k.listener.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if from.IP.String() == src {
			return true
		}
	}
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestKernelDroppedPushServer is issue 12's kernel test, in network
// namespaces (CI=true runs it): a foreign UDP REGISTER with a push UA is
// dropped by a real NFLOG+DROP pair, read from the kernel, parsed,
// aggregated (and flushed to the state DB), and becomes a push candidate.
// Three push servers then take the three paths:
//
//   - .67 has a forward-confirmed PTR in push.domains: learned at once,
//     never admitted;
//   - .66 gets a probation: its next REGISTER reaches the SIP listener,
//     and a (replayed) SuccessfulAuth learns it;
//   - .68 gets a probation and fails: banned, its admission revoked, and
//     its next REGISTER is dropped again.
func TestKernelDroppedPushServer(t *testing.T) {
	k := newKernelWorld(t)
	st, err := state.Open(t.TempDir() + "/" + state.FileName)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rec := &recorder{}
	prob := NewProbation(ProbationOptions{
		Policy: Policy{UserAgents: []*regexp.Regexp{regexp.MustCompile(`(?i)^Bria Push`)},
			Domains: []string{"softphone.com"}, Duration: 30 * time.Second, MaxPerHour: 10},
		Resolver: fakeResolver{netip.MustParseAddr("203.0.113.67"): "push-new.softphone.com."},
		Gate:     nsGate{ns: k.pbx, set: k.set, rec: rec}, Banner: rec, Learner: rec,
	})
	w := New(Options{Store: st, Probation: prob, FlushEvery: 100 * time.Millisecond,
		Country: func(a netip.Addr) string {
			if netip.MustParsePrefix("203.0.113.0/24").Contains(a) {
				return "XX"
			}
			return ""
		}})
	reg := register("Bria Push Service", pushParams)
	k.send(t, "203.0.113.66", reg)
	if k.received("203.0.113.66", 300*time.Millisecond) {
		t.Fatal("the listener got a foreign REGISTER: the DROP did not drop")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx, nflog.Options{Group: k.group, NetNS: int(k.nsFD)}) }()

	// The reader binds asynchronously: resend until the first copy is seen.
	waitFor(t, "the first REGISTER's NFLOG copy", func() bool {
		k.send(t, "203.0.113.66", reg)
		_, ok := w.Source(netip.MustParseAddr("203.0.113.66"))
		return ok
	})
	k.send(t, "203.0.113.67", reg)
	k.send(t, "203.0.113.68", reg)
	for _, a := range []string{"203.0.113.66", "203.0.113.67", "203.0.113.68"} {
		waitFor(t, a+"'s outcome", func() bool {
			l := rec.list()
			return strings.Contains(l, "admit "+a) || strings.Contains(l, "learn "+a)
		})
	}
	if l := rec.list(); strings.Contains(l, "admit 203.0.113.67") || !strings.Contains(l, "learn 203.0.113.67 ptr push-new.softphone.com.") {
		t.Fatalf("FCrDNS path: %s", l)
	}

	// Probation: the next REGISTER reaches Asterisk's port.
	k.send(t, "203.0.113.66", reg)
	if !k.received("203.0.113.66", 3*time.Second) {
		t.Fatal("the REGISTER during probation did not reach the SIP listener")
	}
	prob.AuthSucceeded(ctx, netip.MustParseAddr("203.0.113.66"), "1001")
	if l := rec.list(); !strings.Contains(l, "learn 203.0.113.66 user_agent Bria Push Service") {
		t.Fatalf("probation + SuccessfulAuth did not learn: %s", l)
	}

	// A failure during probation bans and closes the door again.
	prob.AuthFailed(ctx, netip.MustParseAddr("203.0.113.68"), "ChallengeResponseFailed")
	if l := rec.list(); !strings.Contains(l, "revoke 203.0.113.68") || !strings.Contains(l, "ban 203.0.113.68") {
		t.Fatalf("failure during probation: %s", l)
	}
	k.send(t, "203.0.113.68", reg)
	if k.received("203.0.113.68", 500*time.Millisecond) {
		t.Fatal("a REGISTER after the failed probation reached the listener")
	}

	// The aggregates reach the state DB.
	waitFor(t, "the flush", func() bool {
		rows, err := st.DroppedSources(ctx, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range rows {
			if r.Country == "XX" && r.UserAgent == "Bria Push Service" && len(r.PushParams) == 3 &&
				len(r.Methods) == 1 && r.Methods[0] == "REGISTER" && r.Protos[0] == "udp" && r.LastPort == 5060 {
				n++
			}
		}
		return n == 3
	})
	rows, _ := st.DroppedSources(ctx, time.Time{})
	states := map[string]string{}
	for _, r := range rows {
		states[r.Addr.String()] = r.Push
	}
	if fmt.Sprint(states) != "map[203.0.113.66:learned 203.0.113.67:learned 203.0.113.68:banned]" {
		t.Errorf("push states in the DB: %v", states)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
