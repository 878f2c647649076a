// Package loggen makes large Asterisk logs for benchmarks from the recorded
// ones: it cycles through the recorded lines and gives each block of lines a
// different source address, so a report over the result has many sources.
//
// It is benchmark tooling only; nothing shipped imports it.
package loggen

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"regexp"
)

// recordedSources are the source addresses of the recording that get
// replaced (127.0.0.1, the PBX's own address, is kept).
var recordedSources = regexp.MustCompile(`\b127\.0\.0\.(?:1[1-3]|2[12]|31)\b|\b203\.0\.113\.66\b`)

// Lines returns the non-header lines of a recorded log (lines that start
// with "[" and are not Asterisk's "built by" banner).
func Lines(recorded []byte) [][]byte {
	var out [][]byte
	for _, l := range bytes.SplitAfter(recorded, []byte("\n")) {
		if len(l) == 0 || l[0] != '[' || bytes.Contains(l, []byte(" built by ")) {
			continue
		}
		if l[len(l)-1] != '\n' {
			l = append(l, '\n')
		}
		out = append(out, l)
	}
	return out
}

// Write writes n lines cycled from lines; line i's recorded source becomes
// one of `sources` addresses of 100.64.0.0/10, picked by i/50 (so runs of 50
// lines share a source, like a scanner's burst).
func Write(w io.Writer, lines [][]byte, n, sources int) error {
	if len(lines) == 0 {
		return fmt.Errorf("loggen: no recorded lines")
	}
	if sources < 1 || sources > 1<<22 {
		return fmt.Errorf("loggen: sources %d: want 1..4194304", sources)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	base := netip.MustParseAddr("100.64.0.0").As4()
	addrs := make([][]byte, sources)
	for k := range addrs {
		a := base
		a[2] = byte(k >> 8)
		a[3] = byte(k)
		a[1] += byte(k >> 16)
		addrs[k] = []byte(netip.AddrFrom4(a).String())
	}
	for i := 0; i < n; i++ {
		l := lines[i%len(lines)]
		src := addrs[(i/50)%sources]
		if _, err := bw.Write(recordedSources.ReplaceAllLiteral(l, src)); err != nil {
			return err
		}
	}
	return bw.Flush()
}
