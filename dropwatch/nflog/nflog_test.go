package nflog_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/sipsentry/sipsentry/dropwatch/nflog"
	"github.com/sipsentry/sipsentry/dropwatch/packet"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// TestReadsKernelCopies: in a namespace, an NFLOG rule (prefix
// sipsentry-geo, 512 bytes) followed by a DROP on UDP 5060; a packet sent
// over a veth from a peer namespace is dropped (no listener sees it) and
// its copy is read, decoded and tagged with the reason "geo".
func TestReadsKernelCopies(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "iptables")
	pbx := netnstest.NewNS(t, "nfr")
	peer := netnstest.NewNS(t, "nfp")
	netnstest.Veth(t, pbx, peer, []string{"198.51.100.1/24"}, []string{"198.51.100.66/24"})
	group := 4000 + time.Now().Nanosecond()%1000
	pbx.MustExec("iptables", "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", "NFLOG",
		"--nflog-prefix", "sipsentry-geo", "--nflog-group", strconv.Itoa(group), "--nflog-size", "512")
	pbx.MustExec("iptables", "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", "DROP")

	h, err := netns.GetFromName(pbx.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex // guards got
	var got []nflog.Drop
	seen := make(chan struct{}, 16)
	done := make(chan error, 1)
	go func() {
		done <- nflog.Run(ctx, nflog.Options{Group: uint16(group), NetNS: int(h)}, func(d nflog.Drop) {
			d.Payload = append([]byte(nil), d.Payload...)
			mu.Lock()
			got = append(got, d)
			mu.Unlock()
			seen <- struct{}{}
		})
	}()
	// A listener in the pbx namespace must never see the dropped packet.
	var lc *net.UDPConn
	if err := pbx.Do(func() (err error) {
		lc, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 5060})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer lc.Close()
	var c *net.UDPConn
	if err := peer.Do(func() (err error) {
		c, err = net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("198.51.100.66"), Port: 5070}, &net.UDPAddr{IP: net.ParseIP("198.51.100.1"), Port: 5060})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	big := make([]byte, 1200) // more than --nflog-size: the copy is cut
	copy(big, "REGISTER sip:198.51.100.1 SIP/2.0\r\n")
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		if _, err := c.Write(big); err != nil {
			t.Fatal(err)
		}
		select {
		case <-seen:
			break wait
		case err := <-done:
			t.Fatalf("reader ended: %v", err)
		case <-tick.C:
		case <-deadline:
			t.Fatal("no NFLOG copy within 10 s")
		}
	}
	mu.Lock()
	d := got[0]
	mu.Unlock()
	if d.Reason != nflog.ReasonGeo || d.Src != netip.MustParseAddr("198.51.100.66") || d.Proto != packet.ProtoUDP ||
		d.SrcPort != 5070 || d.DstPort != 5060 || !d.Truncated || len(d.Payload) != 512-28 ||
		string(d.Payload[:8]) != "REGISTER" {
		t.Fatalf("copy: reason %q src %v proto %d ports %d->%d truncated %v payload %d bytes %q",
			d.Reason, d.Src, d.Proto, d.SrcPort, d.DstPort, d.Truncated, len(d.Payload), d.Payload[:min(16, len(d.Payload))])
	}
	_ = lc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := lc.ReadFrom(make([]byte, 2000)); err == nil {
		t.Fatalf("the listener received %d bytes: the DROP did not drop", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}

func TestGroupZero(t *testing.T) {
	if err := nflog.Run(context.Background(), nflog.Options{}, func(nflog.Drop) {}); err != nflog.ErrGroup {
		t.Fatalf("group 0: %v, want ErrGroup", err)
	}
}
