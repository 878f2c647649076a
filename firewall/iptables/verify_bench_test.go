package iptables

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// The drift benchmarks load what a busy PBX holds: 100k bans and the 8
// shipped countries' lists (v4 and v6) in allow-cc.
//
//	CI=true go test -run '^$' -bench 'Verify|Flush|Restore' -benchtime=5x ./firewall/iptables/

var shippedCountries = []string{"br", "ca", "cn", "de", "jp", "ru", "sg", "us"}

// untilDesired holds bans by their end, as the engine does: the time
// left is computed at each iteration.
type untilDesired struct {
	firewall.DesiredSets
	bans  []firewall.Entry
	until []time.Time
}

func (u untilDesired) Entries(set firewall.Set) iter.Seq[firewall.Entry] {
	if set != firewall.SetBan {
		return u.DesiredSets.Entries(set)
	}
	return func(yield func(firewall.Entry) bool) {
		now := time.Now()
		for i, e := range u.bans {
			e.Timeout = u.until[i].Sub(now)
			if !yield(e) {
				return
			}
		}
	}
}

func bigWorld(b *testing.B, nBans int) (*Backend, untilDesired) {
	be := benchBackend(b)
	want := firewall.DesiredSets{firewall.SetAllow: {{Prefix: netip.MustParsePrefix("203.0.113.0/28"), Comment: "static (config)"}}}
	for _, cc := range shippedCountries {
		for _, fam := range []string{"ipv4", "ipv6"} {
			for _, p := range geoList(b, cc+"-"+fam+"-aggregated.txt") {
				want[firewall.SetAllowCountry] = append(want[firewall.SetAllowCountry], firewall.Entry{Prefix: p})
			}
		}
	}
	want[firewall.SetBan] = banEntries(nBans)
	if err := be.Replace(ctx, firewall.SetAllowCountry, want[firewall.SetAllowCountry]); err != nil {
		b.Fatal(err)
	}
	if err := be.Replace(ctx, firewall.SetAllow, want[firewall.SetAllow]); err != nil {
		b.Fatal(err)
	}
	u := untilDesired{DesiredSets: want, bans: want[firewall.SetBan]}
	now := time.Now()
	for _, e := range u.bans {
		u.until = append(u.until, now.Add(e.Timeout))
	}
	if _, err := be.BulkLoad(ctx, firewall.SetBan, u.Entries(firewall.SetBan)); err != nil {
		b.Fatal(err)
	}
	return be, u
}

func banEntries(n int) []firewall.Entry {
	es := make([]firewall.Entry, n)
	a := netip.MustParseAddr("100.64.0.0")
	for i := range es {
		es[i] = firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Duration(3600+i%3600) * time.Second, Comment: "ban: 5 failed auths"}
		a = a.Next()
	}
	return es
}

func cpuNow() time.Duration {
	u, s := cpuSplit()
	return u + s
}

// cpuSplit is the process's user and system time so far (the kernel's
// side of a netlink dump is system time).
func cpuSplit() (user, sys time.Duration) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// rawCmd runs an ipset command in the backend's namespace and returns its
// wall and CPU time (user + system, the kernel's dump or load included).
func rawCmd(b testing.TB, be *Backend, stdin []byte, args ...string) (wall, cpu time.Duration) {
	var err error
	var out bytes.Buffer
	be.run.do(func() {
		cmd := exec.Command("ipset", args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		cmd.Stdout = &out
		cmd.Stderr = &out
		t0 := time.Now()
		err = cmd.Run()
		wall = time.Since(t0)
		if cmd.ProcessState != nil {
			cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
	})
	if err != nil {
		b.Fatalf("ipset %v: %v: %.300s", args, err, out.String())
	}
	return wall, cpu
}

// BenchmarkVerify100k: CPU time of one Verify (no drift) with 100k bans
// and the 8 countries loaded. Goal < 50 ms. Baseline: `ipset list` of the
// same sets (one process reading them all), same run.
func BenchmarkVerify100k(b *testing.B) {
	be, want := bigWorld(b, 100000)
	if d, err := be.Verify(ctx, want, false); err != nil || !d.Clean() {
		b.Fatalf("first Verify: %s %v", d, err)
	}
	var ours, oursWall, oursSys, raw, rawWall time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u0, s0 := cpuSplit()
		t0 := time.Now()
		d, err := be.Verify(ctx, want, false)
		oursWall += time.Since(t0)
		u1, s1 := cpuSplit()
		ours += u1 - u0 + s1 - s0
		oursSys += s1 - s0
		if err != nil || !d.Clean() {
			b.Fatalf("Verify: %s %v", d, err)
		}
		w, c := rawCmd(b, be, nil, "list")
		raw, rawWall = raw+c, rawWall+w
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(ours.Microseconds())/1000/n, "verify-cpu-ms")
	b.ReportMetric(float64(oursWall.Microseconds())/1000/n, "verify-wall-ms")
	b.ReportMetric(float64(oursSys.Microseconds())/1000/n, "verify-sys-ms")
	b.ReportMetric(float64(raw.Microseconds())/1000/n, "ipset-list-cpu-ms")
	b.ReportMetric(float64(ours)/float64(raw), "cpu-ratio-vs-ipset-list")
	b.ReportMetric(float64(len(want.DesiredSets[firewall.SetAllowCountry])), "country-prefixes")
}

// BenchmarkFlushToRepair: `ipset flush` of a 100k ban set, then the time
// from the start of Verify(repair) to every ban back. Goal <= 200 ms.
// Baseline: `ipset restore` of the same 100k adds into the flushed set.
func BenchmarkFlushToRepair(b *testing.B) {
	be, want := bigWorld(b, 100000)
	s := be.spec(firewall.SetBan, "inet")
	var script strings.Builder
	for _, e := range want.bans {
		addLine(&script, "add", s.name, s, e)
	}
	raw := []byte(script.String())
	count := func() int {
		k, err := be.vconn.dumpSet(s.name, nil)
		if err != nil {
			b.Fatal(err)
		}
		return k.size()
	}
	var ours, oursCPU, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rawCmd(b, be, nil, "flush", s.name)
		c0, t0 := cpuNow(), time.Now()
		d, err := be.Verify(ctx, want, true)
		ours += time.Since(t0)
		oursCPU += cpuNow() - c0
		if err != nil {
			b.Fatal(err)
		}
		if o, ok := findObject(d, "ban-v4"); !ok || !o.Repaired || o.Missing != 100000 {
			b.Fatalf("drift %s", d)
		}
		if n := count(); n != 100000 {
			b.Fatalf("%d bans back, want 100000", n)
		}
		rawCmd(b, be, nil, "flush", s.name)
		w, _ := rawCmd(b, be, raw, "-exist", "restore")
		base += w
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(ours.Microseconds())/1000/n, "flush-to-all-back-ms")
	b.ReportMetric(float64(oursCPU.Microseconds())/1000/n, "repair-cpu-ms")
	b.ReportMetric(float64(base.Microseconds())/1000/n, "raw-restore-ms")
	b.ReportMetric(float64(ours)/float64(base), "ratio-vs-raw-restore")
}

// BenchmarkRestore100kFromDB: 100k bans from a state DB to the kernel,
// timed from opening the DB. Three ways in the same run: BulkLoad fed
// while the DB is read (new), the engine's former path (rows collected in
// chunks of 4096, each an Add, i.e. one `ipset restore` process after the
// other), and a raw `ipset restore` of the same entries prepared in
// advance (no DB, no Go). Goal: new < 1 s.
func BenchmarkRestore100kFromDB(b *testing.B) {
	be := benchBackend(b)
	const n = 100000
	dbPath := filepath.Join(b.TempDir(), "sipsentry.db")
	st, err := state.Open(dbPath)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	es := banEntries(n)
	var batch state.Batch
	for _, e := range es {
		batch.Bans = append(batch.Bans, state.Ban{Addr: e.Prefix.Addr(), Until: now.Add(e.Timeout), Offences: 1, Reason: "5 failed auths", Created: now})
	}
	if err := st.Apply(context.Background(), &batch); err != nil {
		b.Fatal(err)
	}
	st.Close()
	s := be.spec(firewall.SetBan, "inet")
	var script strings.Builder
	for _, e := range es {
		addLine(&script, "add", s.name, s, e)
	}
	raw := []byte(script.String())
	entry := func(bn state.Ban, now time.Time) firewall.Entry {
		return firewall.Entry{Prefix: netip.PrefixFrom(bn.Addr, bn.Addr.BitLen()), Timeout: bn.Until.Sub(now), Comment: "sipsentry: " + bn.Reason}
	}
	count := func() int {
		k, err := be.vconn.dumpSet(s.name, nil)
		if err != nil {
			b.Fatal(err)
		}
		return k.size()
	}
	empty := func() {
		if err := be.Replace(ctx, firewall.SetBan, nil); err != nil {
			b.Fatal(err)
		}
	}
	var streamed, chunked, base time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// New: one loader fed while the rows are read.
		empty()
		t0 := time.Now()
		st, err := state.Open(dbPath)
		if err != nil {
			b.Fatal(err)
		}
		errStop := errors.New("stop")
		var loadErr error
		seq := func(yield func(firewall.Entry) bool) {
			now := time.Now()
			loadErr = st.EachBan(ctx, now, func(bn state.Ban) error {
				if !yield(entry(bn, now)) {
					return errStop
				}
				return nil
			})
		}
		r, err := be.BulkLoad(ctx, firewall.SetBan, seq)
		streamed += time.Since(t0)
		st.Close()
		if err != nil || loadErr != nil || r.Loaded != n {
			b.Fatalf("BulkLoad: %+v %v %v", r, err, loadErr)
		}
		if c := count(); c != n {
			b.Fatalf("%d bans in the kernel, want %d", c, n)
		}

		// Before: chunks of 4096 rows, each one Add (one restore process).
		empty()
		t0 = time.Now()
		st, err = state.Open(dbPath)
		if err != nil {
			b.Fatal(err)
		}
		chunk := make([]firewall.Entry, 0, 4096)
		now := time.Now()
		err = st.EachBan(ctx, now, func(bn state.Ban) error {
			chunk = append(chunk, entry(bn, now))
			if len(chunk) == cap(chunk) {
				err := be.Add(ctx, firewall.SetBan, chunk...)
				chunk = chunk[:0]
				return err
			}
			return nil
		})
		if err == nil && len(chunk) > 0 {
			err = be.Add(ctx, firewall.SetBan, chunk...)
		}
		chunked += time.Since(t0)
		st.Close()
		if err != nil {
			b.Fatal(err)
		}
		if c := count(); c != n {
			b.Fatalf("%d bans in the kernel, want %d", c, n)
		}

		// Baseline: raw ipset restore of the same adds.
		empty()
		w, _ := rawCmd(b, be, raw, "-exist", "restore")
		base += w
	}
	b.StopTimer()
	nn := float64(b.N)
	b.ReportMetric(float64(streamed.Microseconds())/1000/nn, "bulkload-from-db-ms")
	b.ReportMetric(float64(chunked.Microseconds())/1000/nn, "chunked-adds-from-db-ms")
	b.ReportMetric(float64(base.Microseconds())/1000/nn, "raw-restore-ms")
	b.ReportMetric(float64(streamed)/float64(base), "bulkload-ratio-vs-raw")
	b.ReportMetric(float64(chunked)/float64(base), "chunked-ratio-vs-raw")
}

// BenchmarkSetInfos100k: the set sizes for /status with 100k bans and the
// 8 countries loaded: SetInfos (netlink, headers only) against Status
// (`ipset list -t` and iptables processes), same run.
func BenchmarkSetInfos100k(b *testing.B) {
	be, _ := bigWorld(b, 100000)
	if _, err := be.SetInfos(ctx); err != nil {
		b.Fatal(err)
	}
	if k, err := be.sconn.dumpHeader(be.spec(firewall.SetBan, "inet").name); err != nil || k.size() != 0 || k.header.Entries != 100000 {
		b.Fatalf("header-only list: %d members read, header says %d entries, %v", k.size(), k.header.Entries, err)
	}
	var ours, status time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		infos, err := be.SetInfos(ctx)
		ours += time.Since(t0)
		if err != nil || len(infos) != 2*len(firewall.Sets) {
			b.Fatalf("SetInfos: %v %v", infos, err)
		}
		t0 = time.Now()
		if _, err := be.Status(ctx); err != nil {
			b.Fatal(err)
		}
		status += time.Since(t0)
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(ours.Microseconds())/1000/n, "setinfos-ms")
	b.ReportMetric(float64(status.Microseconds())/1000/n, "status-ms")
	b.ReportMetric(float64(ours)/float64(status), "ratio-vs-status")
}
