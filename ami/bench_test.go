package ami_test

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

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

// BenchmarkSecuritySession reads ami-security-session.raw (189 events, 172
// of them security events) per iteration. "naive" runs first and its rate is
// the baseline; later sub-benchmarks report x_naive = their rate / baseline.
func BenchmarkSecuritySession(b *testing.B) {
	data := readCodecData(b, "ami-security-session.raw")
	const secEvents = 172
	var naiveRate float64
	report := func(b *testing.B, n int) {
		rate := float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "secevents/s")
		b.ReportMetric(float64(n)/float64(b.N), "secevents/op")
		if naiveRate > 0 {
			b.ReportMetric(rate/naiveRate, "x_naive")
		}
	}
	b.Run("naive", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
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
		report(b, n)
		naiveRate = float64(n) / b.Elapsed().Seconds()
	})
	b.Run("codec", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		br := bytes.NewReader(data)
		for b.Loop() {
			br.Reset(data)
			r := ami.NewReader(br, ami.ReaderOptions{})
			if _, err := r.ReadBanner(); err != nil {
				b.Fatal(err)
			}
			for {
				m, err := r.ReadMessage()
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				if ami.IsSecurityEvent(&m) {
					n++
				}
			}
		}
		if n != secEvents*b.N {
			b.Fatalf("codec counted %d security events, want %d per run", n, secEvents)
		}
		report(b, n)
	})
	b.Run("codec+parse", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		br := bytes.NewReader(data)
		for b.Loop() {
			br.Reset(data)
			r := ami.NewReader(br, ami.ReaderOptions{})
			if _, err := r.ReadBanner(); err != nil {
				b.Fatal(err)
			}
			for {
				m, err := r.ReadMessage()
				if err == io.EOF {
					break
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
		if n != secEvents*b.N {
			b.Fatalf("codec+parse counted %d security events, want %d per run", n, secEvents)
		}
		report(b, n)
	})
}
