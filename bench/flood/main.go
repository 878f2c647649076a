package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sipsentry/sipsentry/bench/internal/benchns"
)

func main() {
	o := options{progress: os.Stdout}
	flag.IntVar(&o.sources, "sources", 100000, "distinct sources")
	flag.IntVar(&o.fails, "fails", 6, "failures per source (one round through all sources per failure)")
	flag.Float64Var(&o.rate, "rate", 10000, "events per second")
	flag.StringVar(&o.bin, "bin", "", "sipsentry binary (default: go build ./cmd/sipsentry)")
	flag.StringVar(&o.engine, "engine", "", "extra [engine] lines, e.g. 'max_sources = 150000'")
	flag.DurationVar(&o.wait, "wait", 120*time.Second, "how long to wait for the bans after the flood")
	flag.DurationVar(&o.tick, "tick", 10*time.Millisecond, "send what is due every tick (bursts of rate × tick events)")
	flag.StringVar(&o.profileDir, "profile", "", "save the daemon's CPU profile over the flood and its heap at the RSS peak and at the end in this directory (turns on metrics.pprof)")
	keep := flag.Bool("keep", false, "keep the work directory (config, state DB, daemon log)")
	flag.Parse()
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "-profile:", err)
			os.Exit(1)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := repoRoot()
	if err != nil {
		fatal("%v", err)
	}
	o.geoDir = filepath.Join(filepath.Dir(root), "shared", "testdata", "geo")
	if o.dir, err = os.MkdirTemp("", "sstflood-"); err != nil {
		fatal("%v", err)
	}
	if !*keep {
		defer os.RemoveAll(o.dir)
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.dir, "sipsentry")
		cmd := exec.Command("go", "build", "-o", o.bin, "./cmd/sipsentry")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			fatal("go build: %v: %s", err, out)
		}
	}
	ns, err := newNS()
	if err != nil {
		fatal("%v", err)
	}
	defer ns.Delete()
	res, err := run(ctx, ns, o)
	fmt.Print(res)
	if len(res.missingSample) > 0 {
		fmt.Printf("missing, e.g.: %v\n", res.missingSample)
	}
	fmt.Printf("RSS samples (MB, one a second):")
	for _, kb := range res.rssSamples {
		fmt.Printf(" %.0f", float64(kb)/1024)
	}
	fmt.Println()
	if *keep {
		fmt.Println("work directory:", o.dir)
	}
	if err != nil {
		fatal("flood: %v (daemon log: %s)", err, res.daemonLog)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above %s", dir)
		}
		dir = parent
	}
}

// nsHandle is the command's own namespace (bench/internal/benchns).
type nsHandle = benchns.NS

func newNS() (*nsHandle, error) { return benchns.New("sstflood-") }
