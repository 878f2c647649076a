package ami_test

import (
	"bufio"
	"bytes"
	"io"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// naiveRead is the baseline the codec is measured against: what most AMI
// libraries do (bufio.Scanner, strings.SplitN on ":" into one map per
// message). It loses repeated keys and is here only to be beaten.
func naiveRead(data []byte, fn func(map[string]string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // banner
	m := map[string]string{}
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			if len(m) > 0 {
				fn(m)
				m = map[string]string{}
			}
			continue
		}
		kv := strings.SplitN(line, ":", 2)
		if len(kv) == 2 {
			m[kv[0]] = strings.TrimSpace(kv[1])
		}
	}
}

// codecRead reads every message of data with the codec and counts the
// security events.
func codecRead(b *testing.B, br *bytes.Reader, data []byte) int {
	n := 0
	br.Reset(data)
	r := ami.NewReader(br, ami.ReaderOptions{})
	if _, err := r.ReadBanner(); err != nil {
		b.Fatal(err)
	}
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		if ami.IsSecurityEvent(&m) {
			n++
		}
	}
}

// codecParse is codecRead plus ParseSecurityEvent on every security event.
func codecParse(b *testing.B, br *bytes.Reader, data []byte) int {
	n := 0
	br.Reset(data)
	r := ami.NewReader(br, ami.ReaderOptions{})
	if _, err := r.ReadBanner(); err != nil {
		b.Fatal(err)
	}
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
		if !ami.IsSecurityEvent(&m) {
			continue
		}
		ev, err := ami.ParseSecurityEvent(&m)
		if err != nil || !ev.Remote.IsValid() {
			b.Fatalf("parse: %v", err)
		}
		n++
	}
}

// BenchmarkSecuritySession reads ami-security-session.raw (189 events, 172
// of them security events) per iteration. "naive" runs first and its rate is
// the baseline; later sub-benchmarks report x_naive = their rate / baseline.
// "interleaved" measures all three readers in alternating blocks within the
// same iterations, which is the figure to trust on a loaded machine. Run:
//
//	go test ./ami -run '^$' -bench SecuritySession -cpu 1
func BenchmarkSecuritySession(b *testing.B) {
	data := readCodecData(b, "ami-security-session.raw")
	const secEvents = 172
	// Rates per wall second and per CPU second of this process (GC
	// included). On a shared machine the wall rate says how much of a core
	// the scheduler gave us; the CPU rate is what one core does for us.
	var naiveRate, naiveCPURate float64
	report := func(b *testing.B, n int, cpu time.Duration, baseline bool) {
		rate := float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "secevents/s")
		b.ReportMetric(float64(n)/float64(b.N), "secevents/op")
		cpuRate := 0.0
		if cpu > 0 {
			cpuRate = float64(n) / cpu.Seconds()
			b.ReportMetric(cpuRate, "secevents/cpu-s")
		}
		if baseline {
			naiveRate, naiveCPURate = rate, cpuRate
			return
		}
		if naiveRate > 0 {
			b.ReportMetric(rate/naiveRate, "x_naive")
		}
		if naiveCPURate > 0 && cpuRate > 0 {
			b.ReportMetric(cpuRate/naiveCPURate, "x_naive_cpu")
		}
	}
	b.Run("naive", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		c0 := processCPU()
		for b.Loop() {
			naiveRead(data, func(m map[string]string) {
				if m["Privilege"] == "security,all" {
					n++
				}
			})
		}
		if n != secEvents*b.N {
			b.Fatalf("naive counted %d security events, want %d per run", n, secEvents)
		}
		report(b, n, processCPU()-c0, true)
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		br := bytes.NewReader(data)
		c0 := processCPU()
		for b.Loop() {
			n += codecRead(b, br, data)
		}
		if n != secEvents*b.N {
			b.Fatalf("codec counted %d security events, want %d per run", n, secEvents)
		}
		report(b, n, processCPU()-c0, false)
	})
	// The machine is shared and noisy, so sequential sub-benchmarks see
	// different load. This one alternates blocks of the two readers inside
	// every iteration (switching which goes first) and compares the median
	// blocks. Each block ends with a timed runtime.GC(), so each reader pays
	// for collecting its own garbage rather than leaving it to the other.
	b.Run("interleaved", func(b *testing.B) {
		const passes = 20 // long blocks, so the forced GC's fixed cost weighs little
		br := bytes.NewReader(data)
		readers := []func(){
			func() { naiveRead(data, func(map[string]string) {}) },
			func() { codecRead(b, br, data) },
			func() { codecParse(b, br, data) },
		}
		wall := make([][]time.Duration, len(readers))
		runtime.GC()
		i := 0
		for b.Loop() {
			for k := range readers {
				j := (i + k) % len(readers) // rotate who goes first
				t0 := time.Now()
				for range passes {
					readers[j]()
				}
				runtime.GC()
				wall[j] = append(wall[j], time.Since(t0))
			}
			i++
		}
		naive, codec, parse := median(wall[0]), median(wall[1]), median(wall[2])
		b.ReportMetric(passes*secEvents/codec.Seconds(), "codec_secevents/s")
		b.ReportMetric(passes*secEvents/parse.Seconds(), "codec+parse_secevents/s")
		b.ReportMetric(naive.Seconds()/codec.Seconds(), "x_naive")
		b.ReportMetric(naive.Seconds()/parse.Seconds(), "x_naive_with_parse")
	})
	b.Run("codec+parse", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		br := bytes.NewReader(data)
		c0 := processCPU()
		for b.Loop() {
			n += codecParse(b, br, data)
		}
		if n != secEvents*b.N {
			b.Fatalf("codec+parse counted %d security events, want %d per run", n, secEvents)
		}
		report(b, n, processCPU()-c0, false)
	})
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkParseSecurityEvent is ParseSecurityEvent alone over the 172
// security events of the recorded session (already read).
func BenchmarkParseSecurityEvent(b *testing.B) {
	msgs, _ := readAll(b, readCodecData(b, "ami-security-session.raw"), true)
	var sec []ami.Message
	for i := range msgs {
		if ami.IsSecurityEvent(&msgs[i]) {
			sec = append(sec, msgs[i])
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range sec {
			if _, err := ami.ParseSecurityEvent(&sec[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(len(sec)*b.N)/b.Elapsed().Seconds(), "secevents/s")
}
