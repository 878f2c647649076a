package iptables

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// Benchmarks run as root in a namespace of their own; off root they skip
// (under CI=true they fail, like every kernel test). Every figure is
// reported next to a baseline measured in the same run:
//
//	go test -run '^$' -bench . ./firewall/iptables/

func benchBackend(b *testing.B) *Backend {
	b.Helper()
	requireKernel(b)
	ns := netnstest.NewNS(b, "bench")
	be := newInNS(b, ns, testConfig("enforce"))
	if err := be.Up(ctx); err != nil {
		b.Fatal(err)
	}
	return be
}

// rawRestore feeds script to `ipset restore` in the backend's namespace:
// the baseline with no validation, no ownership check, no Go formatting.
func rawRestore(b testing.TB, be *Backend, script []byte) {
	var err error
	var out []byte
	be.run.do(func() {
		cmd := exec.Command("ipset", "-exist", "restore")
		cmd.Stdin = bytes.NewReader(script)
		out, err = cmd.CombinedOutput()
	})
	if err != nil {
		b.Fatalf("raw ipset restore: %v: %s", err, out)
	}
}

// BenchmarkReplaceUSList: Replace of the allow-cc set with the US IPv4 list
// (~29k prefixes) against a raw `ipset restore` of the same stream (create
// temp, add, swap, destroy) prepared in advance. Goal: ratio <= 1.5.
func BenchmarkReplaceUSList(b *testing.B) {
	be := benchBackend(b)
	us := geoList(b, "us-ipv4-aggregated.txt")
	es := make([]firewall.Entry, len(us))
	for i, p := range us {
		es[i] = firewall.Entry{Prefix: p}
	}
	s := be.spec(firewall.SetAllowCountry, "inet")
	var raw strings.Builder
	tmp := tmpName(s.name)
	raw.WriteString(s.createLine(tmp, len(es), 65536))
	for _, e := range es {
		addLine(&raw, "add", tmp, s, e)
	}
	raw.WriteString("swap " + tmp + " " + s.name + "\ndestroy " + tmp + "\n")
	script := []byte(raw.String())
	var ours, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		rawRestore(b, be, script)
		t1 := time.Now()
		if err := be.Replace(ctx, firewall.SetAllowCountry, es); err != nil {
			b.Fatal(err)
		}
		base += t1.Sub(t0)
		ours += time.Since(t1)
	}
	b.ReportMetric(float64(ours.Milliseconds())/float64(b.N), "replace-ms")
	b.ReportMetric(float64(base.Milliseconds())/float64(b.N), "raw-restore-ms")
	b.ReportMetric(float64(ours)/float64(base), "ratio-vs-raw")
	b.ReportMetric(float64(len(es)), "prefixes")
}

// ipsetShell is a long-lived interactive `ipset -` process: it applies each
// command at once (`ipset restore` cannot serve: it batches until end of
// input). Its prompt is block-buffered on a pipe, so the ack is the answer
// to a following `test`, which ipset writes unbuffered to stderr.
type ipsetShell struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	er  *bufio.Reader
}

func startShell(b testing.TB, be *Backend) *ipsetShell {
	sh := &ipsetShell{}
	var err error
	be.run.do(func() {
		sh.cmd = exec.Command("ipset", "-exist", "-")
		if sh.in, err = sh.cmd.StdinPipe(); err != nil {
			return
		}
		var se io.ReadCloser
		if se, err = sh.cmd.StderrPipe(); err != nil {
			return
		}
		sh.er = bufio.NewReader(se)
		err = sh.cmd.Start()
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sh.in.Close(); _ = sh.cmd.Wait() })
	return sh
}

// add adds a to set and returns when the kernel holds it.
func (sh *ipsetShell) add(b testing.TB, set string, a netip.Addr) {
	if _, err := fmt.Fprintf(sh.in, "add %s %s timeout 3600 comment \"5 failed auths\"\ntest %s %s\n", set, a, set, a); err != nil {
		b.Fatal(err)
	}
	line, err := sh.er.ReadString('\n')
	if err != nil || !strings.Contains(line, " is in set ") {
		b.Fatalf("ipset shell: %q, %v", line, err)
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

// makeFlow creates a UDP conntrack entry src -> local:5060 (as a SIP
// packet from src would) so that the flush has something to delete.
func makeFlow(b testing.TB, be *Backend, src netip.AddrPort, local netip.AddrPort) {
	f := &netlink.ConntrackFlow{
		FamilyType: unix.AF_INET,
		Forward:    netlink.IPTuple{SrcIP: src.Addr().AsSlice(), DstIP: local.Addr().AsSlice(), Protocol: unix.IPPROTO_UDP, SrcPort: src.Port(), DstPort: local.Port()},
		Reverse:    netlink.IPTuple{SrcIP: local.Addr().AsSlice(), DstIP: src.Addr().AsSlice(), Protocol: unix.IPPROTO_UDP, SrcPort: local.Port(), DstPort: src.Port()},
		TimeOut:    120,
	}
	be.nlMu.Lock()
	err := be.nl.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, f)
	be.nlMu.Unlock()
	if err != nil {
		b.Fatalf("conntrack create: %v", err)
	}
}

// BenchmarkBanLatency: one ban (add with timeout and comment) plus the
// conntrack flush of that source's SIP flow (created before each sample),
// several ways, interleaved in one run:
//   - netlink: Add on the shared handle + DropFlow by tuple (the kept path);
//   - netlink-walk: Add + DropFlows(addr), which walks the conntrack table;
//   - pipe: a long-lived interactive ipset process + DropFlow by tuple;
//   - exec: one exec of ipset and one of conntrack -D (full tuple) per ban.
//
// Goal: p99 <= 1 ms for the kept path.
func BenchmarkBanLatency(b *testing.B) {
	be := benchBackend(b)
	netnstest.RequireTool(b, "conntrack")
	sh := startShell(b, be)
	name := be.spec(firewall.SetBan, "inet").name
	local := netip.MustParseAddrPort("198.51.100.1:5060")
	var nlLat, walkLat, pipeLat, execLat []time.Duration
	next := netip.MustParseAddr("198.18.0.1")
	addr := func() netip.AddrPort { a := next; next = next.Next(); return netip.AddrPortFrom(a, 5062) }
	entry := func(a netip.Addr) firewall.Entry {
		return firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour, Comment: "5 failed auths"}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := addr()
		makeFlow(b, be, a, local)
		t0 := time.Now()
		if err := be.Add(ctx, firewall.SetBan, entry(a.Addr())); err != nil {
			b.Fatal(err)
		}
		if err := be.DropFlow(ctx, "udp", a, local); err != nil {
			b.Fatal(err)
		}
		nlLat = append(nlLat, time.Since(t0))

		a = addr()
		makeFlow(b, be, a, local)
		t0 = time.Now()
		sh.add(b, name, a.Addr())
		if err := be.DropFlow(ctx, "udp", a, local); err != nil {
			b.Fatal(err)
		}
		pipeLat = append(pipeLat, time.Since(t0))

		if i%8 == 0 { // these cost 100x more; sample them less
			a = addr()
			makeFlow(b, be, a, local)
			t0 = time.Now()
			if err := be.Add(ctx, firewall.SetBan, entry(a.Addr())); err != nil {
				b.Fatal(err)
			}
			if err := be.DropFlows(ctx, a.Addr()); err != nil {
				b.Fatal(err)
			}
			walkLat = append(walkLat, time.Since(t0))

			a = addr()
			makeFlow(b, be, a, local)
			t0 = time.Now()
			var err error
			var out []byte
			be.run.do(func() {
				if out, err = exec.Command("ipset", "-exist", "add", name, a.Addr().String(), "timeout", "3600", "comment", "5 failed auths").CombinedOutput(); err != nil {
					return
				}
				out, err = exec.Command("conntrack", "-D", "-p", "udp", "-s", a.Addr().String(), "--sport", fmt.Sprint(a.Port()),
					"-d", local.Addr().String(), "--dport", fmt.Sprint(local.Port())).CombinedOutput()
			})
			if err != nil {
				b.Fatalf("exec: %v: %s", err, out)
			}
			execLat = append(execLat, time.Since(t0))
		}
	}
	b.StopTimer()
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	for _, v := range []struct {
		name string
		lat  []time.Duration
	}{{"netlink", nlLat}, {"pipe", pipeLat}, {"walk", walkLat}, {"exec", execLat}} {
		b.ReportMetric(us(percentile(v.lat, 0.5)), v.name+"-p50-µs")
		b.ReportMetric(us(percentile(v.lat, 0.99)), v.name+"-p99-µs")
		if v.name != "netlink" {
			b.ReportMetric(float64(percentile(v.lat, 0.5))/float64(percentile(nlLat, 0.5)), v.name+"/netlink-p50")
		}
	}
	b.ReportMetric(float64(len(nlLat)), "samples")
}

// BenchmarkLoad100kBans: 100,000 bans in one Add (one restore stream)
// against a raw `ipset restore` of the same lines. Goal: < 2 s.
func BenchmarkLoad100kBans(b *testing.B) {
	be := benchBackend(b)
	const n = 100000
	es := make([]firewall.Entry, n)
	a := netip.MustParseAddr("100.64.0.0")
	for i := range es {
		es[i] = firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Duration(3600+i%3600) * time.Second, Comment: "restored ban"}
		a = a.Next()
	}
	s := be.spec(firewall.SetBan, "inet")
	var raw strings.Builder
	for _, e := range es {
		addLine(&raw, "add", s.name, s, e)
	}
	script := []byte(raw.String())
	var ours, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := be.Replace(ctx, firewall.SetBan, nil); err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		rawRestore(b, be, script)
		base += time.Since(t0)
		if err := be.Replace(ctx, firewall.SetBan, nil); err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		if err := be.Add(ctx, firewall.SetBan, es...); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
	}
	b.StopTimer()
	// The same load as an atomic Replace (how the engine restores at start).
	t0 := time.Now()
	if err := be.Replace(ctx, firewall.SetBan, es); err != nil {
		b.Fatal(err)
	}
	rep := time.Since(t0)
	if got, err := be.Status(ctx); err == nil {
		for _, si := range got.Sets {
			if si.Set == firewall.SetBan && si.Family == "inet" && si.Entries != n {
				b.Fatalf("ban set holds %d entries after the load, want %d", si.Entries, n)
			}
		}
	}
	b.ReportMetric(float64(ours.Milliseconds())/float64(b.N), "add-100k-ms")
	b.ReportMetric(float64(base.Milliseconds())/float64(b.N), "raw-restore-ms")
	b.ReportMetric(float64(ours)/float64(base), "ratio-vs-raw")
	b.ReportMetric(float64(rep.Milliseconds()), "replace-100k-ms")
}

// BenchmarkAddOne: one ban's Add (the engine's path: a request without an
// ack on the backend's own socket) against the netlink package's
// IpsetAdd on its handle (the path before issue 11's latency work),
// interleaved into the same kernel set in one run. Reported: ns per add of
// each, and their ratio.
func BenchmarkAddOne(b *testing.B) {
	be := benchBackend(b)
	s := be.spec(firewall.SetBan, "inet")
	next := netip.MustParseAddr("198.18.0.1")
	var cur, old time.Duration
	for b.Loop() {
		a := next
		next = next.Next()
		e := firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour, Comment: "sipsentry: 5 failed auths"}
		t0 := time.Now()
		if err := be.Add(ctx, firewall.SetBan, e); err != nil {
			b.Fatal(err)
		}
		cur += time.Since(t0)
		e.Prefix = netip.PrefixFrom(next, 32)
		next = next.Next()
		t0 = time.Now()
		be.nlMu.Lock()
		err := be.nl.IpsetAdd(s.name, netlinkPkgEntry(s, e))
		be.nlMu.Unlock()
		old += time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cur.Nanoseconds())/float64(b.N), "ns/add")
	b.ReportMetric(float64(old.Nanoseconds())/float64(b.N), "netlink-pkg-ns/add")
	b.ReportMetric(float64(cur)/float64(old), "ratio")
}

// BenchmarkDropFlowAbsent: the post-ban conntrack delete of a flow that
// does not exist (every ban of a flood: the scanner's packets are UDP
// without replies), both directions in one sendmsg, against the netlink
// package's request with an ack per direction (the path before), same run.
func BenchmarkDropFlowAbsent(b *testing.B) {
	be := benchBackend(b)
	local := netip.MustParseAddrPort("198.51.100.1:5060")
	next := netip.MustParseAddr("198.18.0.1")
	var sock *nl.SocketHandle
	be.run.do(func() {
		s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_NETFILTER)
		if err != nil {
			b.Fatal(err)
		}
		sock = &nl.SocketHandle{Socket: s}
	})
	defer sock.Close()
	var cur, old time.Duration
	for b.Loop() {
		remote := netip.AddrPortFrom(next, 5062)
		next = next.Next()
		t0 := time.Now()
		if err := be.DropFlow(ctx, "udp", remote, local); err != nil {
			b.Fatal(err)
		}
		cur += time.Since(t0)
		t0 = time.Now()
		for _, dir := range [][2]netip.AddrPort{{remote, local}, {local, remote}} {
			if err := netlinkPkgCTDelete(sock, dir[0], dir[1]); err != nil && !errors.Is(err, syscall.ENOENT) {
				b.Fatal(err)
			}
		}
		old += time.Since(t0)
	}
	b.ReportMetric(float64(cur.Nanoseconds())/float64(b.N), "ns/dropflow")
	b.ReportMetric(float64(old.Nanoseconds())/float64(b.N), "netlink-pkg-ns/dropflow")
	b.ReportMetric(float64(cur)/float64(old), "ratio")
}

// netlinkPkgCTDelete is the delete as it was made before ctdelete.go: the
// netlink package's request with an ack, on a socket kept open.
func netlinkPkgCTDelete(sock *nl.SocketHandle, src, dst netip.AddrPort) error {
	req := &nl.NetlinkRequest{
		NlMsghdr: unix.NlMsghdr{
			Len:   uint32(unix.SizeofNlMsghdr),
			Type:  uint16(unix.NFNL_SUBSYS_CTNETLINK<<8 | nl.IPCTNL_MSG_CT_DELETE),
			Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK,
		},
		Sockets: map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: sock},
	}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_INET, Version: nl.NFNETLINK_V0})
	ip := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_IP, nil)
	ip.AddChild(nl.NewRtAttr(nl.CTA_IP_V4_SRC, src.Addr().AsSlice()))
	ip.AddChild(nl.NewRtAttr(nl.CTA_IP_V4_DST, dst.Addr().AsSlice()))
	pr := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_PROTO, nil)
	pr.AddChild(nl.NewRtAttr(nl.CTA_PROTO_NUM, []byte{unix.IPPROTO_UDP}))
	pr.AddChild(nl.NewRtAttr(nl.CTA_PROTO_SRC_PORT, nl.BEUint16Attr(src.Port())))
	pr.AddChild(nl.NewRtAttr(nl.CTA_PROTO_DST_PORT, nl.BEUint16Attr(dst.Port())))
	tuple := nl.NewRtAttr(unix.NLA_F_NESTED|nl.CTA_TUPLE_ORIG, nil)
	tuple.AddChild(ip)
	tuple.AddChild(pr)
	req.AddData(tuple)
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	return err
}

// netlinkPkgEntry is an entry as the add path built it for the netlink
// package's IpsetAdd before nlAdd sent its own request (BenchmarkAddOne's
// baseline).
func netlinkPkgEntry(s setSpec, e firewall.Entry) *netlink.IPSetEntry {
	ne := &netlink.IPSetEntry{IP: e.Prefix.Addr().AsSlice(), Replace: true}
	if s.typ == "hash:net" {
		ne.CIDR = uint8(e.Prefix.Bits())
	}
	if s.timeout {
		t := uint32(0)
		if e.Timeout > 0 {
			t = timeoutSeconds(e.Timeout)
		}
		ne.Timeout = &t
	}
	if s.comment {
		ne.Comment = e.Comment
	}
	return ne
}
