package geo

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
	"go4.org/netipx"
)

var benchOnce struct {
	sync.Once
	ips []netip.Addr
	ix  *Index
	g   *Geo
	raw *maxminddb.Reader
}

// allShipped is every shipped country's v4+v6 list, parsed.
func allShipped(b testing.TB) map[string][]netip.Prefix {
	by := map[string][]netip.Prefix{}
	for _, cc := range shippedCountries {
		for _, v6 := range []bool{false, true} {
			by[strings.ToUpper(cc)] = append(by[strings.ToUpper(cc)], readShipped(b, cc, v6)...)
		}
	}
	return by
}

func benchSetup(b *testing.B) {
	td := testdata(b)
	benchOnce.Do(func() {
		r := rand.New(rand.NewPCG(7, 8))
		benchOnce.ips = make([]netip.Addr, 1<<20)
		for i := range benchOnce.ips {
			v := r.Uint32()
			benchOnce.ips[i] = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		}
		benchOnce.ix = NewIndex(allShipped(b))
		cfg := testOptions()
		cfg.MMDB = filepath.Join(td, "dbip-country.mmdb")
		g, err := Open(cfg.at(b.TempDir()), quiet())
		if err != nil {
			b.Fatal(err)
		}
		benchOnce.g = g
		// Same loading as geo (bytes in memory, not mmap), so the ratio
		// measures geo's wrapper, not page faults.
		buf, err := os.ReadFile(filepath.Join(td, "dbip-country.mmdb"))
		if err != nil {
			b.Fatal(err)
		}
		raw, err := maxminddb.OpenBytes(buf)
		if err != nil {
			b.Fatal(err)
		}
		benchOnce.raw = raw
	})
}

var sinkB bool

// BenchmarkIPv4Lookup times, per iteration, one pass of the same 1M random
// IPv4 addresses through (1) the raw maxminddb call on dbip-country.mmdb,
// (2) geo's mmdb path on the same file and (3) the list index holding all
// shipped countries — interleaved, so the ratios share the machine's noise.
// Run with -benchtime=6x or so (even): one iteration is 3M lookups.
func BenchmarkIPv4Lookup(b *testing.B) {
	benchSetup(b)
	ips, ix, g, raw := benchOnce.ips, benchOnce.ix, benchOnce.g, benchOnce.raw
	var tRaw, tMMDB, tIndex time.Duration
	// Results feed a local sum, not a global, so that no variant pays for
	// write barriers the others don't.
	var sum int
	for _, a := range ips[:1<<16] { // warm up both readers
		var cc string
		raw.Lookup(a).DecodePath(&cc, "country_code")
		sum += len(cc) + len(g.MMDBCountry(a))
	}
	b.ResetTimer()
	// Time is this thread's CPU time, not wall time: the build machine is
	// shared and mostly oversubscribed, and preemption would otherwise land
	// on whichever pass happened to run at the time.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rawPass := func() time.Duration {
		t0 := threadCPU(b)
		for _, a := range ips {
			var cc string
			if err := raw.Lookup(a).DecodePath(&cc, "country_code"); err != nil {
				b.Fatal(err)
			}
			sum += len(cc)
		}
		return threadCPU(b) - t0
	}
	mmdbPass := func() time.Duration {
		t0 := threadCPU(b)
		for _, a := range ips {
			sum += len(g.MMDBCountry(a))
		}
		return threadCPU(b) - t0
	}
	for i := 0; i < b.N; i++ {
		// Alternate the order so neither mmdb variant always runs second.
		if i%2 == 0 {
			tRaw += rawPass()
			tMMDB += mmdbPass()
		} else {
			tMMDB += mmdbPass()
			tRaw += rawPass()
		}
		t0 := threadCPU(b)
		for _, a := range ips {
			cc, _ := ix.Country(a)
			sum += len(cc)
		}
		tIndex += threadCPU(b) - t0
	}
	sinkB = sum == 42
	n := float64(b.N * len(ips))
	b.ReportMetric(n/tRaw.Seconds(), "raw_mmdb_lookups/cpu_s")
	b.ReportMetric(n/tMMDB.Seconds(), "geo_mmdb_lookups/cpu_s")
	b.ReportMetric(n/tIndex.Seconds(), "index_lookups/cpu_s")
	b.ReportMetric(tMMDB.Seconds()/tRaw.Seconds(), "geo_mmdb_time/raw")
	b.ReportMetric(tRaw.Seconds()/tIndex.Seconds(), "index_speedup_vs_raw")
}

// threadCPU is the calling OS thread's user+system CPU time.
func threadCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGeoAllowed is the engine's hot call through the public API
// (atomic snapshot load + index), single core, with every shipped country's
// lists allowed. Run it with the default -benchtime.
func BenchmarkGeoAllowed(b *testing.B) {
	benchSetup(b)
	cfg := testOptions()
	cfg.ListsDir = testdata(b)
	for _, cc := range shippedCountries {
		cfg.AllowCountries = append(cfg.AllowCountries, strings.ToUpper(cc))
	}
	g, err := Open(cfg.at(b.TempDir()), quiet())
	if err != nil {
		b.Fatal(err)
	}
	ips, ix := benchOnce.ips, benchOnce.ix
	runtime.LockOSThread() // CPU time of this thread; see BenchmarkIPv4Lookup
	defer runtime.UnlockOSThread()
	n, m := 0, 0
	var tGeo, tIx time.Duration
	b.ResetTimer()
	// Chunks of 64K alternate between Geo.Allowed and the bare index.
	for done := 0; done < b.N; {
		chunk := min(b.N-done, 1<<16)
		t0 := threadCPU(b)
		for i := done; i < done+chunk; i++ {
			if g.Allowed(ips[i&(len(ips)-1)]) {
				n++
			}
		}
		t1 := threadCPU(b)
		for i := done; i < done+chunk; i++ {
			if ix.Contains(ips[i&(len(ips)-1)]) {
				m++
			}
		}
		t2 := threadCPU(b)
		tGeo, tIx = tGeo+t1-t0, tIx+t2-t1
		done += chunk
	}
	if n != m {
		b.Fatalf("Geo.Allowed said yes %d times, the index %d", n, m)
	}
	b.ReportMetric(float64(b.N)/tGeo.Seconds(), "geo_allowed/cpu_s")
	b.ReportMetric(float64(b.N)/tIx.Seconds(), "index/cpu_s")
	b.ReportMetric(tGeo.Seconds()/tIx.Seconds(), "geo_time/index")
	b.ReportMetric(float64(n)/float64(b.N), "share_allowed")
}

// BenchmarkIndexIPv6 looks up random addresses in 2000::/4 (where the
// delegations are) in the all-countries index: plain binary search.
func BenchmarkIndexIPv6(b *testing.B) {
	benchSetup(b)
	r := rand.New(rand.NewPCG(11, 12))
	ips := make([]netip.Addr, 1<<16)
	for i := range ips {
		var a [16]byte
		hi, lo := r.Uint64(), r.Uint64()
		for k := 0; k < 8; k++ {
			a[k], a[8+k] = byte(hi>>(56-8*k)), byte(lo>>(56-8*k))
		}
		a[0] = 0x20 | a[0]&0x0f
		ips[i] = netip.AddrFrom16(a)
	}
	ix := benchOnce.ix
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n := 0
	b.ResetTimer()
	t0 := threadCPU(b)
	for i := 0; i < b.N; i++ {
		if ix.Contains(ips[i&(len(ips)-1)]) {
			n++
		}
	}
	b.ReportMetric(float64(b.N)/(threadCPU(b)-t0).Seconds(), "lookups/cpu_s")
	sinkB = n == 42
}

// BenchmarkParseNormalizeUS parses, validates (the entry floor) and
// normalises the largest shipped list, and times netipx's IPSetBuilder on
// the same parsed input as the baseline for the normalise step.
func BenchmarkParseNormalizeUS(b *testing.B) {
	body, err := os.ReadFile(filepath.Join(testdata(b), "us-ipv4-aggregated.txt"))
	if err != nil {
		b.Fatal(err)
	}
	var tParse, tNorm, tNetipx time.Duration
	runtime.LockOSThread() // CPU time of this thread; see BenchmarkIPv4Lookup
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := threadCPU(b)
		ps, err := ParseList(bytes.NewReader(body), false)
		if err != nil {
			b.Fatal(err)
		}
		t1 := threadCPU(b)
		norm := Normalize(ps)
		if len(norm) < 50 {
			b.Fatal("under the floor")
		}
		t2 := threadCPU(b)
		var sb netipx.IPSetBuilder
		for _, p := range ps {
			sb.AddPrefix(p)
		}
		s, _ := sb.IPSet()
		ref := s.Prefixes()
		t3 := threadCPU(b)
		if len(ref) != len(norm) {
			b.Fatalf("netipx %d vs ours %d", len(ref), len(norm))
		}
		tParse += t1 - t0
		tNorm += t2 - t1
		tNetipx += t3 - t2
	}
	n := float64(b.N)
	total := (tParse + tNorm).Seconds() / n
	b.ReportMetric(total*1e3, "parse+normalise_ms")
	b.ReportMetric(tParse.Seconds()/n*1e3, "parse_ms")
	b.ReportMetric(tNorm.Seconds()/n*1e3, "normalise_ms")
	b.ReportMetric(tNetipx.Seconds()/n*1e3, "netipx_normalise_ms")
	b.ReportMetric(tNetipx.Seconds()/tNorm.Seconds(), "normalise_speedup_vs_netipx")
	b.ReportMetric(total/0.050, "share_of_50ms_goal")
}

// BenchmarkIndexMemory reports the heap held by one index of every shipped
// country (v4+v6), measured as a runtime.MemStats delta around NewIndex.
func BenchmarkIndexMemory(b *testing.B) {
	by := allShipped(b)
	var fileBytes int64
	for _, cc := range shippedCountries {
		for _, fam := range []string{"ipv4", "ipv6"} {
			fi, err := os.Stat(filepath.Join(testdata(b), cc+"-"+fam+"-aggregated.txt"))
			if err != nil {
				b.Fatal(err)
			}
			fileBytes += fi.Size()
		}
	}
	// heapDelta is the live heap that build's result keeps, measured
	// between full collections.
	heapDelta := func(build func() any) (uint64, any) {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		v := build()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		return m1.HeapAlloc - m0.HeapAlloc, v
	}
	var held, setBytes uint64
	var ix *Index
	for i := 0; i < b.N; i++ {
		ix = nil
		var v any
		held, v = heapDelta(func() any { return NewIndex(by) })
		ix = v.(*Index)
		// Baseline: the same lists as one netipx.IPSet per country.
		var sets any
		setBytes, sets = heapDelta(func() any {
			sets := map[string]*netipx.IPSet{}
			for cc, ps := range by {
				var sb netipx.IPSetBuilder
				for _, p := range ps {
					sb.AddPrefix(p)
				}
				sets[cc], _ = sb.IPSet()
			}
			return sets
		})
		runtime.KeepAlive(sets)
	}
	v4, v6 := ix.Ranges()
	b.ReportMetric(float64(setBytes), "netipx_ipsets_bytes")
	b.ReportMetric(float64(held)/float64(setBytes), "index/netipx_bytes")
	b.ReportMetric(float64(held), "index_bytes")
	b.ReportMetric(float64(ix.Len()), "prefixes")
	b.ReportMetric(float64(v4), "v4_ranges")
	b.ReportMetric(float64(v6), "v6_ranges")
	b.ReportMetric(float64(held)/float64(fileBytes), "index_bytes/list_file_bytes")
}
