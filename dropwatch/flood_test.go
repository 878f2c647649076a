package dropwatch

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/vishvananda/netns"

	"github.com/sipsentry/sipsentry/dropwatch/nflog"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/state"
)

// floodEnv makes the test binary a flood sender (see TestMain).
const floodEnv = "SIPSENTRY_DROPWATCH_FLOOD"

// TestMain turns the test binary into the flood sender when TestKernelFlood
// starts it inside its namespace with floodEnv set (a separate process, so
// the sender's CPU is not the reader's); otherwise it runs the tests.
func TestMain(m *testing.M) {
	if spec := os.Getenv(floodEnv); spec != "" {
		n, err := floodSender(spec)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flood sender:", err)
			os.Exit(1)
		}
		fmt.Printf("sent %d\n", n)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// floodSender sends UDP REGISTERs from `sources` spoofed IPv6 sources in
// 2001:db8:ff::/96 to [2001:db8::1]:5060 through a raw socket for the
// given duration ("<sources> <duration>"), as fast as it can, and returns
// how many it sent.
func floodSender(spec string) (int, error) {
	f := strings.Fields(spec)
	if len(f) != 2 {
		return 0, fmt.Errorf("want \"<sources> <duration>\", got %q", spec)
	}
	sources, err := strconv.Atoi(f[0])
	if err != nil || sources < 1 {
		return 0, fmt.Errorf("bad source count %q", f[0])
	}
	dur, err := time.ParseDuration(f[1])
	if err != nil {
		return 0, err
	}
	fd, err := syscall.Socket(syscall.AF_INET6, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
	if err != nil {
		return 0, err
	}
	defer syscall.Close(fd)
	payload := register("friendly-scanner", "")
	pkt := make([]byte, 48+len(payload))
	binary.BigEndian.PutUint32(pkt[0:], 0x60000000)
	binary.BigEndian.PutUint16(pkt[4:], uint16(8+len(payload)))
	pkt[6], pkt[7] = 17, 64
	src := netip.MustParseAddr("2001:db8:ff::").As16()
	copy(pkt[8:], src[:])
	dst := netip.MustParseAddr("2001:db8::1").As16()
	copy(pkt[24:], dst[:])
	binary.BigEndian.PutUint16(pkt[40:], 5070)
	binary.BigEndian.PutUint16(pkt[42:], 5060)
	binary.BigEndian.PutUint16(pkt[44:], uint16(8+len(payload)))
	copy(pkt[48:], payload)
	sa := &syscall.SockaddrInet6{Addr: dst}
	end := time.Now().Add(dur)
	n := 0
	for ; n%1024 != 0 || time.Now().Before(end); n++ {
		binary.BigEndian.PutUint32(pkt[20:], uint32(n%sources))
		if err := syscall.Sendto(fd, pkt, 0, sa); err != nil && err != syscall.ENOBUFS {
			return n, err
		}
	}
	return n, nil
}

func rssBytes() uint64 { return rssField("VmRSS:") }

// rssField reads a kB field of /proc/self/status (VmRSS, VmHWM) in bytes.
func rssField(name string) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, name); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestKernelFlood: a flood of dropped packets from 200,000 sources for 10 s
// into a namespace whose NFLOG rule has no kernel limit (the worst case;
// sipsentry's rules cap copies at 1000/s): the reader keeps up or counts
// what the kernel lost, the table never holds more than its capacity
// (evicting the least recently seen), and the heap stays within the
// per-address budget. It logs the reader's packets per CPU-second and the
// memory figures.
func TestKernelFlood(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ip6tables")
	if testing.Short() {
		t.Skip("a 10 s flood; run without -short")
	}
	pbx := netnstest.NewNS(t, "dwfl")
	pbx.MustExec("ip", "-6", "addr", "add", "2001:db8::1/128", "dev", "lo")
	group := strconv.Itoa(7000 + time.Now().Nanosecond()%1000)
	pbx.MustExec("ip6tables", "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", "NFLOG",
		"--nflog-prefix", "sipsentry-geo", "--nflog-group", group, "--nflog-size", "512")
	pbx.MustExec("ip6tables", "-A", "INPUT", "-p", "udp", "--dport", "5060", "-j", "DROP")
	h, err := netns.GetFromName(pbx.Name)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	st, err := state.Open(t.TempDir() + "/" + state.FileName)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const capacity, sources = 100_000, 200_000
	debug.FreeOSMemory()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	rss0 := rssBytes()
	w := New(Options{MaxSources: capacity, Store: st, Country: func(netip.Addr) string { return "XX" }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, _ := strconv.Atoi(group)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx, nflog.Options{Group: uint16(g), NetNS: int(h)}) }()
	time.Sleep(300 * time.Millisecond) // let the reader bind
	cpu0 := processCPU()
	cmd := exec.Command("ip", "netns", "exec", pbx.Name, os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d 10s", floodEnv, sources))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sender: %v: %s", err, out)
	}
	time.Sleep(500 * time.Millisecond) // drain what is queued
	cpu := processCPU() - cpu0
	peak := rssField("VmHWM:")
	cancel()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	seen := testutil.ToFloat64(w.packets.WithLabelValues("geo", "XX"))
	s := w.Stats()
	// Steady state: the reader stopped, the table full, the garbage of the
	// flood returned to the OS (the daemon's trimWhenIdle does the same).
	debug.FreeOSMemory()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	rss1 := rssBytes()
	if p := os.Getenv("DW_HEAPPROF"); p != "" {
		f, _ := os.Create(p)
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
	sent := 0
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "sent "); ok {
			sent, _ = strconv.Atoi(v)
		}
	}
	// 200k sources through 100k slots: the table grew to its capacity, so
	// the budget is per slot.
	heapPer := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / capacity
	t.Logf("sent %d in 10 s (%.0f/s) from %d sources; read %.0f (%.1f%%), kernel overruns %d; %.0f packets per CPU-second of the reader (parse, aggregate, flush, netlink included)",
		sent, float64(sent)/10, sources, seen, 100*seen/float64(max(sent, 1)), s.Overruns, seen/cpu.Seconds())
	t.Logf("table %d sources (capacity %d), evicted %d (unsaved %d); steady heap +%.1f MB (%.1f B per slot), steady RSS +%.1f MB, peak RSS %.1f MB (before: %.1f MB)",
		s.Sources, capacity, s.Evicted, s.EvictedUnsaved, float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc))/1e6, heapPer,
		float64(int64(rss1)-int64(rss0))/1e6, float64(peak)/1e6, float64(rss0)/1e6)
	if seen == 0 || sent == 0 {
		t.Fatal("the flood was not seen")
	}
	if s.Sources > capacity {
		t.Fatalf("table holds %d sources, capacity %d", s.Sources, capacity)
	}
	if s.Evicted > 0 && s.Sources != capacity {
		t.Fatalf("evicted %d sources from a table that holds %d of %d", s.Evicted, s.Sources, capacity)
	}
	// The engine's budget is 64 B per tracked address; the table alone is
	// 58 B, and the rest of the heap (metrics, interned UAs, flush batch
	// garbage collected above) may add a little.
	if heapPer > 80 {
		t.Fatalf("%.1f heap bytes per table slot, budget 64 (+16 for the rest)", heapPer)
	}
	runtime.KeepAlive(w)
}
