package report

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"runtime"
	"testing"

	"github.com/sipsentry/sipsentry/bench/report/loggen"
	"github.com/sipsentry/sipsentry/seclog"
)

const benchLines = 50000

// benchLog is benchLines lines generated from the recorded security log,
// with 1,000 distinct sources.
func benchLog(b *testing.B) []byte {
	b.Helper()
	rec, err := os.ReadFile(sharedData(b, "asterisk/security.log"))
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if err := loggen.Write(&buf, loggen.Lines(rec), benchLines, 1000); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// f2bLike is fail2ban's asterisk failregex for the security log, in RE2
// (its negative lookahead dropped): the baseline a regexp-based reader pays
// per line, measured in the same run.
var f2bLike = regexp.MustCompile(`^\[[^\]]+\] SECURITY\[\d+\] [^:]+: SecurityEvent="(?:FailedACL|InvalidAccountID|ChallengeResponseFailed|InvalidPassword)"(?:,\w+="[^"]*")*?,RemoteAddress="IPV[46]/[^/"]+/([^/"]+)/\d+"(?:,\w+="[^"]*")*$`)

func runSeclog(b *testing.B, data []byte, agg *Aggregator) int {
	r := seclog.NewReader(bytes.NewReader(data))
	n := 0
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if agg != nil {
			agg.Add(&ev)
		}
		n++
	}
	return n
}

// BenchmarkOfflineReport measures the offline path (read, parse, attribute,
// aggregate) against two baselines run on the same bytes in the same run:
// a regexp per line in the style of fail2ban's filter, and bare line
// splitting (the I/O floor).
func BenchmarkOfflineReport(b *testing.B) {
	data := benchLog(b)
	perSec := func(b *testing.B) float64 { return float64(benchLines*b.N) / b.Elapsed().Seconds() }
	var regexpRate, seclogRate, aggRate float64
	b.Run("baseline_split_lines", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 64<<10), 64<<10)
			for sc.Scan() {
			}
		}
		b.ReportMetric(perSec(b), "lines/s")
	})
	b.Run("baseline_regexp", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		hits := 0
		for b.Loop() {
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(make([]byte, 64<<10), 64<<10)
			for sc.Scan() {
				if m := f2bLike.FindSubmatchIndex(sc.Bytes()); m != nil {
					hits++
				}
			}
		}
		if hits == 0 {
			b.Fatal("baseline regexp matched nothing")
		}
		regexpRate = perSec(b)
		b.ReportMetric(regexpRate, "lines/s")
	})
	b.Run("seclog", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		for b.Loop() {
			if n := runSeclog(b, data, nil); n != benchLines {
				b.Fatalf("%d events from %d lines", n, benchLines)
			}
		}
		runtime.ReadMemStats(&ms1)
		seclogRate = perSec(b)
		b.ReportMetric(seclogRate, "lines/s")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(benchLines*b.N), "allocs/line")
	})
	b.Run("seclog+aggregate", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		var agg *Aggregator
		for b.Loop() {
			agg = NewAggregator()
			runSeclog(b, data, agg)
		}
		if len(agg.Inputs()) < 1000 {
			b.Fatalf("only %d sources", len(agg.Inputs()))
		}
		aggRate = perSec(b)
		b.ReportMetric(aggRate, "lines/s")
		if regexpRate > 0 {
			b.ReportMetric(aggRate/regexpRate, "x_regexp_baseline")
		}
	})
	if regexpRate > 0 && seclogRate > 0 {
		b.Logf("seclog %.0f lines/s, with aggregation %.0f lines/s, regexp baseline %.0f lines/s: %.1fx / %.1fx",
			seclogRate, aggRate, regexpRate, seclogRate/regexpRate, aggRate/regexpRate)
	}
}

// BenchmarkOfflineReport1M is the figure: a 1,000,000-line security
// log generated into a temp dir (about 330 MB, 20,000 sources), read from
// disk through the whole offline path (framing, parsing, attribution,
// aggregation). It reports lines/s, allocations per line and the heap the
// aggregate holds at the end, next to the regexp baseline on the same file.
func BenchmarkOfflineReport1M(b *testing.B) {
	const n = 1000000
	rec, err := os.ReadFile(sharedData(b, "asterisk/security.log"))
	if err != nil {
		b.Fatal(err)
	}
	path := b.TempDir() + "/security.log"
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := loggen.Write(f, loggen.Lines(rec), n, n/50); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	perSec := func(b *testing.B) float64 { return float64(n*b.N) / b.Elapsed().Seconds() }
	var base float64
	b.Run("baseline_regexp", func(b *testing.B) {
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				f2bLike.FindSubmatchIndex(sc.Bytes())
			}
			f.Close()
		}
		base = perSec(b)
		b.ReportMetric(base, "lines/s")
	})
	b.Run("sources", func(b *testing.B) {
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		var agg *Aggregator
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			agg = NewAggregator()
			r := seclog.NewReader(f)
			for {
				ev, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				agg.Add(&ev)
			}
			f.Close()
			if r.Stats().Events != n {
				b.Fatalf("%d events", r.Stats().Events)
			}
		}
		runtime.ReadMemStats(&ms1)
		rate := perSec(b)
		b.ReportMetric(rate, "lines/s")
		b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(n*b.N), "allocs/line")
		runtime.GC()
		var ms2 runtime.MemStats
		runtime.ReadMemStats(&ms2)
		b.ReportMetric(float64(ms2.HeapInuse)/(1<<20), "heap-MB-after")
		if base > 0 {
			b.ReportMetric(rate/base, "x_regexp_baseline")
		}
		runtime.KeepAlive(agg)
	})
}
