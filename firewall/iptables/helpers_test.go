package iptables

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// geoList reads ../shared/testdata/geo/NAME beside the directory holding
// go.mod (CI clones the repository with shared/ beside it).
func geoList(t testing.TB, name string) []netip.Prefix {
	t.Helper()
	f, err := os.Open(testpath.Shared(t, "geo", name))
	if err != nil {
		t.Fatalf("test data missing (expected ../shared/testdata beside the repository): %v", err)
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		p, err := netip.ParsePrefix(l)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// listener is a SIP-ish UDP server inside a namespace: it counts datagrams
// per source and, if reply is set, answers each with a 200 OK.
type listener struct {
	conn  *net.UDPConn
	reply bool
	mu    sync.Mutex
	got   map[netip.Addr]int
}

func listen(t testing.TB, ns *netnstest.NS, port int, reply bool) *listener {
	t.Helper()
	l := &listener{reply: reply, got: map[netip.Addr]int{}}
	err := ns.Do(func() (err error) {
		l.conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: port}) // dual stack
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = l.conn.SetReadBuffer(8 << 20)
	t.Cleanup(func() { l.conn.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := l.conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.got[from.Addr().Unmap()]++
			l.mu.Unlock()
			if l.reply && strings.HasPrefix(string(buf[:n]), "OPTIONS ") {
				_, _ = l.conn.WriteToUDPAddrPort([]byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"), from)
			}
		}
	}()
	return l
}

func (l *listener) count(a netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.got[a]
}

// dial opens a connected UDP socket in ns from src to dst: one socket is
// one conntrack flow.
func dial(t testing.TB, ns *netnstest.NS, src netip.Addr, dst netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0)), net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func optionsMsg(c *net.UDPConn) []byte {
	return []byte("OPTIONS sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() +
		";branch=z9hG4bK-sipsentry-test\r\nMax-Forwards: 70\r\nCall-ID: test@sipsentry\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
}

// options sends one SIP OPTIONS and reports whether a 200 OK came back
// within wait.
func options(t testing.TB, c *net.UDPConn, wait time.Duration) bool {
	t.Helper()
	if _, err := c.Write(optionsMsg(c)); err != nil {
		t.Fatalf("send OPTIONS: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return false
		}
		// ICMP errors from earlier sends (none expected: DROP is silent).
		t.Fatalf("read reply: %v", err)
	}
	return strings.HasPrefix(string(buf[:n]), "SIP/2.0 200")
}

// mustReach asserts that OPTIONS get answered (a few tries: the first
// packet may wait for neighbour discovery).
func mustReach(t testing.TB, c *net.UDPConn, what string) {
	t.Helper()
	for range 5 {
		if options(t, c, 2*time.Second) {
			return
		}
	}
	t.Fatalf("%s: OPTIONS got no answer", what)
}

// counter returns the packet counter of the rule of family fam whose spec
// ends with suffix (e.g. "-j DROP" for enforce's last rule).
func counter(t testing.TB, b *Backend, fam, match string) uint64 {
	t.Helper()
	st, err := b.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var hits []firewall.Rule
	for _, r := range st.Rules {
		if r.Family == fam && strings.HasSuffix(r.Spec, match) {
			hits = append(hits, r)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("%d rules of %s end with %q: %+v", len(hits), fam, match, st.Rules)
	}
	return hits[0].Packets
}

// waitCounter waits (without a time assertion: the bound only ends a hung
// test) until the counter passes before.
func waitCounter(t testing.TB, b *Backend, fam, match string, before uint64) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n := counter(t, b, fam, match); n > before {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter of %q (%s) stayed at %d", match, fam, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	countersRE = regexp.MustCompile(`\[\d+:\d+\]`)
	// A set's hash seed is random at each create (a Replace swaps in a new
	// set): not part of what the admin configured.
	initvalRE = regexp.MustCompile(` initval 0x[0-9a-f]+`)
)

// snapshot is the namespace's whole netfilter state as the admin sees it.
func snapshot(t testing.TB, ns *netnstest.NS) string {
	t.Helper()
	var b strings.Builder
	for _, prog := range []string{"iptables-save", "ip6tables-save"} {
		out := ns.MustExec(prog)
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "#") {
				continue // "Generated on <time>"
			}
			b.WriteString(countersRE.ReplaceAllString(l, "[]"))
			b.WriteByte('\n')
		}
	}
	names := strings.Fields(ns.MustExec("ipset", "list", "-n"))
	slices.Sort(names)
	b.WriteString("sets: " + strings.Join(names, " ") + "\n")
	for _, n := range names {
		b.WriteString(initvalRE.ReplaceAllString(ns.MustExec("ipset", "save", n), ""))
	}
	return b.String()
}
