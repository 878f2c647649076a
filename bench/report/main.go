// Command report-bench compares `sipsentry sources --from-log` with
// fail2ban-regex (Debian's fail2ban, filter "asterisk") on generated
// 1,000,000-line Asterisk logs, in one run on one machine. Not part of CI:
//
//	apt-get install fail2ban   # provides fail2ban-regex
//	go run ./bench/report -lines 1000000
//	go run ./bench/report -lines 250000 -sources 5000   # issue 13's log
//
// It generates, in a temporary directory, a security log (from the recorded
// ../shared/testdata/asterisk/security.log) and a messages log (from the
// recorded messages.log: fail2ban's usual input, the NOTICE lines its
// asterisk filter was written for; its filter also has one rule for
// security-log lines, so it runs on both). Each command runs under
// /usr/bin/time -v for wall time and peak RSS. sipsentry also runs twice
// over logs from the same 2,000 sources, a tenth of the lines and all of
// them, to show that its memory follows the sources, not the log's length.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/bench/report/loggen"
)

func main() {
	lines := flag.Int("lines", 1000000, "lines per generated log")
	sources := flag.Int("sources", 0, "distinct sources in the compared logs (0: lines/50, bursts of 50 lines)")
	shared := flag.String("shared", "../shared/testdata/asterisk", "recorded Asterisk logs")
	filter := flag.String("filter", "/etc/fail2ban/filter.d/asterisk.conf", "fail2ban filter")
	keep := flag.Bool("keep", false, "keep the generated files")
	onlySecurity := flag.Bool("only-security-log", false, "skip fail2ban-regex on the messages log (saves its minutes)")
	flag.Parse()
	if *sources <= 0 {
		*sources = max(1, *lines/50)
	}
	if err := run(*lines, *sources, *shared, *filter, *keep, *onlySecurity); err != nil {
		fmt.Fprintln(os.Stderr, "report-bench:", err)
		os.Exit(1)
	}
}

type result struct {
	name    string
	lines   int
	wall    time.Duration
	cpu     time.Duration // user + system
	rssKB   int
	summary string
}

func (r result) rate() float64 { return float64(r.lines) / r.wall.Seconds() }

// cpuRate is lines per CPU second: on a shared, loaded machine the wall
// clock mostly measures the neighbours, CPU time much less so.
func (r result) cpuRate() float64 { return float64(r.lines) / r.cpu.Seconds() }

func run(n, sources int, shared, filter string, keep, onlySecurity bool) error {
	for _, tool := range []string{"/usr/bin/time", "fail2ban-regex"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (apt-get install time fail2ban)", tool)
		}
	}
	dir, err := os.MkdirTemp("", "sipsentry-report-bench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	bin := filepath.Join(dir, "sipsentry")
	fmt.Println("building sipsentry ...")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/sipsentry").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	emptyCfg := filepath.Join(dir, "empty.toml")
	if err := os.WriteFile(emptyCfg, nil, 0o600); err != nil {
		return err
	}
	gen := func(src, name string, lines, sources int) (string, error) {
		rec, err := os.ReadFile(filepath.Join(shared, src))
		if err != nil {
			return "", err
		}
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			return "", err
		}
		if err := loggen.Write(f, loggen.Lines(rec), lines, sources); err != nil {
			f.Close()
			return "", err
		}
		return p, f.Close()
	}
	fmt.Printf("generating %d-line logs in %s ...\n", n, dir)
	// The compared logs: n lines from `sources` sources (bursts of 50 lines).
	fmt.Printf("compared logs: %d lines from %d distinct sources\n", n, sources)
	sec, err := gen("security.log", "security.log", n, sources)
	if err != nil {
		return err
	}
	// The flat-memory check: the same 2,000 sources over n/10 and n lines.
	secSmall, err := gen("security.log", "security-small.log", n/10, 2000)
	if err != nil {
		return err
	}
	secSame, err := gen("security.log", "security-2k.log", n, 2000)
	if err != nil {
		return err
	}
	msg, err := gen("messages.log", "messages.log", n, sources)
	if err != nil {
		return err
	}

	var rs []result
	for _, c := range []struct {
		name  string
		lines int
		argv  []string
	}{
		{"sipsentry sources --from-log security.log", n, []string{bin, "--config", emptyCfg, "sources", "--from-log", sec, "--limit", "5"}},
		{fmt.Sprintf("sipsentry, %d lines from 2000 sources", n/10), n / 10, []string{bin, "--config", emptyCfg, "sources", "--from-log", secSmall, "--limit", "5"}},
		{fmt.Sprintf("sipsentry, %d lines from 2000 sources", n), n, []string{bin, "--config", emptyCfg, "sources", "--from-log", secSame, "--limit", "5"}},
		{"fail2ban-regex security.log asterisk", n, []string{"fail2ban-regex", sec, filter}},
		{"fail2ban-regex messages.log asterisk", n, []string{"fail2ban-regex", msg, filter}},
	} {
		if onlySecurity && strings.Contains(c.name, "messages.log") {
			continue
		}
		fmt.Printf("running %s ...\n", c.name)
		r, err := timed(c.name, c.lines, c.argv)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}

	fmt.Printf("\n%-48s %9s %11s %9s %13s %9s  %s\n", "command", "wall", "lines/s", "cpu", "lines/cpu-s", "peak RSS", "summary")
	for _, r := range rs {
		fmt.Printf("%-48s %8.2fs %11.0f %8.2fs %13.0f %6d MB  %s\n", r.name, r.wall.Seconds(), r.rate(), r.cpu.Seconds(), r.cpuRate(), r.rssKB/1024, r.summary)
	}
	ss, f2s := rs[0], rs[3]
	fmt.Printf("\nsipsentry vs fail2ban-regex, same security log: %.1fx lines/s wall, %.1fx lines per CPU second, %.2fx peak RSS\n",
		ss.rate()/f2s.rate(), ss.cpuRate()/f2s.cpuRate(), float64(ss.rssKB)/float64(f2s.rssKB))
	if len(rs) > 4 {
		f2m := rs[4]
		fmt.Printf("sipsentry (security log) vs fail2ban-regex (messages log, its usual input): %.1fx lines/s wall, %.1fx lines per CPU second, %.2fx peak RSS\n",
			ss.rate()/f2m.rate(), ss.cpuRate()/f2m.cpuRate(), float64(ss.rssKB)/float64(f2m.rssKB))
	}
	fmt.Printf("sipsentry peak RSS with 2000 sources, %d vs %d lines: %d MB vs %d MB (memory follows sources, not lines)\n", n, n/10, rs[2].rssKB/1024, rs[1].rssKB/1024)
	return nil
}

var (
	wallRE = regexp.MustCompile(`Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)`)
	rssRE  = regexp.MustCompile(`Maximum resident set size \(kbytes\): (\d+)`)
	userRE = regexp.MustCompile(`User time \(seconds\): ([\d.]+)`)
	sysRE  = regexp.MustCompile(`System time \(seconds\): ([\d.]+)`)
	// Summary lines worth echoing: fail2ban's "Lines: ..." and sipsentry's footer.
	sumRE = regexp.MustCompile(`(?m)^(Lines: .*|.*\d+ lines, \d+ events, \d+ garbage.*)$`)
)

func timed(name string, lines int, argv []string) (result, error) {
	cmd := exec.Command("/usr/bin/time", append([]string{"-v"}, argv...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return result{}, err
		}
		return result{}, fmt.Errorf("%s: %v\n%s", name, err, tail(errb.String()))
	}
	r := result{name: name, lines: lines}
	m := wallRE.FindStringSubmatch(errb.String())
	k := rssRE.FindStringSubmatch(errb.String())
	if m == nil || k == nil {
		return r, fmt.Errorf("%s: no /usr/bin/time -v figures in\n%s", name, tail(errb.String()))
	}
	r.wall = parseClock(m[1])
	for _, re := range []*regexp.Regexp{userRE, sysRE} {
		if c := re.FindStringSubmatch(errb.String()); c != nil {
			v, _ := strconv.ParseFloat(c[1], 64)
			r.cpu += time.Duration(v * float64(time.Second))
		}
	}
	r.rssKB, _ = strconv.Atoi(k[1])
	if s := sumRE.FindString(out.String() + "\n" + errb.String()); s != "" {
		r.summary = strings.TrimSpace(s)
	}
	return r, nil
}

// parseClock reads /usr/bin/time's "m:ss.cc" or "h:mm:ss".
func parseClock(s string) time.Duration {
	parts := strings.Split(s, ":")
	var d float64
	for _, p := range parts {
		v, _ := strconv.ParseFloat(p, 64)
		d = d*60 + v
	}
	return time.Duration(d * float64(time.Second))
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}
