package netnstest

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeTB records whether Unavailable chose to fail or to skip.
type fakeTB struct {
	testing.TB
	fatal, skip bool
}

func (f *fakeTB) Helper() {}

// A real Fatalf or Skipf ends the test; the fake only records the first.
func (f *fakeTB) Fatalf(string, ...any) { f.fatal = f.fatal || !f.skip }
func (f *fakeTB) Skipf(string, ...any)  { f.skip = f.skip || !f.fatal }

func TestUnavailableFailsInCISkipsElsewhere(t *testing.T) {
	for _, ci := range []string{"true", ""} {
		t.Setenv("CI", ci)
		f := &fakeTB{TB: t}
		Unavailable(f, "testing")
		if want := ci == "true"; f.fatal != want || f.skip == want {
			t.Errorf("CI=%q: fatal %v skip %v", ci, f.fatal, f.skip)
		}
	}
}

func TestInCIFollowsEnv(t *testing.T) {
	t.Setenv("CI", "true")
	if !InCI() {
		t.Fatal("InCI() = false with CI=true")
	}
	t.Setenv("CI", "")
	if InCI() {
		t.Fatal("InCI() = true without CI")
	}
}

// TestVethAndDo: two namespaces joined by a veth pair exchange a UDP
// datagram over IPv4 and IPv6, with sockets opened through Do; the host's
// namespace is not where they live.
func TestVethAndDo(t *testing.T) {
	RequireRoot(t)
	a, b := NewNS(t, "a"), NewNS(t, "b")
	Veth(t, a, b, []Addr{"198.51.100.1/24", "2001:db8:9::1/64"}, []Addr{"198.51.100.2/24", "2001:db8:9::2/64"})
	if out := a.MustExec("ip", "-o", "addr", "show"); !strings.Contains(out, "198.51.100.1/24") || !strings.Contains(out, "2001:db8:9::1/64") {
		t.Fatalf("addresses missing in %s:\n%s", a.Name, out)
	}
	hostNS, _ := os.Readlink("/proc/self/ns/net")
	for _, dst := range []string{"198.51.100.1", "2001:db8:9::1"} {
		var srv *net.UDPConn
		var inNS string
		if err := a.Do(func() (err error) {
			inNS, _ = os.Readlink("/proc/thread-self/ns/net")
			srv, err = net.ListenUDP("udp", &net.UDPAddr{Port: 5099})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if inNS == hostNS {
			t.Fatalf("Do ran f in the host's namespace %s", hostNS)
		}
		var cl *net.UDPConn
		if err := b.Do(func() (err error) {
			cl, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(dst), 5099)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		got := false
		for try := 0; try < 5 && !got; try++ { // the first may wait for neighbour discovery
			if _, err := cl.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err == nil {
				got = string(buf[:n]) == "ping" && from.Addr().Unmap().String() != ""
			}
		}
		srv.Close()
		cl.Close()
		if !got {
			t.Fatalf("no datagram to %s across the veth pair", dst)
		}
	}
	if now, _ := os.Readlink("/proc/self/ns/net"); now != hostNS {
		t.Fatalf("the test process left its namespace: %s != %s", now, hostNS)
	}
}
