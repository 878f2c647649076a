package sip_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/dropwatch/sip"
)

// processCPU is the CPU time (user+system) of this process: on a shared
// machine it measures the work, not the share of a core we were given.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// naiveParse is the baseline: what a quick script does (split into lines,
// a map of headers, strings.Cut on the URIs). It is here only to be beaten.
func naiveParse(b []byte) map[string]string {
	lines := strings.Split(string(b), "\r\n")
	m := map[string]string{}
	if f := strings.Fields(lines[0]); len(f) == 3 {
		m["method"] = f[0]
	}
	for _, l := range lines[1:] {
		if l == "" {
			break
		}
		k, v, ok := strings.Cut(l, ":")
		if ok {
			m[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
		}
	}
	for _, h := range []string{"from", "to"} {
		if _, rest, ok := strings.Cut(m[h], "sip:"); ok {
			u, _, _ := strings.Cut(rest, "@")
			m[h+"-user"] = u
		}
	}
	m["push"] = strings.Join(strings.Split(m["contact"], ";pn-")[1:], ",")
	return m
}

// requests512 are the recorded requests, each cut at 512 bytes as NFLOG
// copies them.
func requests512(b *testing.B) [][]byte {
	var out [][]byte
	for _, p := range payloads(b) {
		if _, err := sip.Parse(p); err == nil {
			out = append(out, p[:min(len(p), 512)])
		}
	}
	return out
}

// BenchmarkParse reports dropped packets parsed per CPU-second (goal:
// 200k on one core); BenchmarkParseNaive is the same run's baseline.
//
//	go test -run XXX -bench 'Parse' -benchtime 2s -cpu 1 ./dropwatch/sip/
func BenchmarkParse(b *testing.B) {
	reqs := requests512(b)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_, _ = sip.Parse(reqs[i%len(reqs)])
	}
	b.StopTimer()
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "pkts/cpu-s")
	}
}

func BenchmarkParseNaive(b *testing.B) {
	reqs := requests512(b)
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = naiveParse(reqs[i%len(reqs)])
	}
	b.StopTimer()
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "pkts/cpu-s")
	}
}
