package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

func main() {
	o := options{progress: os.Stdout}
	flag.IntVar(&o.sources, "sources", 100000, "distinct sources")
	flag.IntVar(&o.fails, "fails", 6, "failures per source (one round through all sources per failure)")
	flag.Float64Var(&o.rate, "rate", 10000, "events per second")
	flag.StringVar(&o.bin, "bin", "", "sipsentry binary (default: go build ./cmd/sipsentry)")
	flag.StringVar(&o.engine, "engine", "", "extra [engine] lines, e.g. 'max_sources = 150000'")
	flag.DurationVar(&o.wait, "wait", 120*time.Second, "how long to wait for the bans after the flood")
	keep := flag.Bool("keep", false, "keep the work directory (config, state DB, daemon log)")
	flag.Parse()

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
	defer ns.delete()
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

// nsHandle is a namespace "sstflood-<random>" of the command's own, deleted
// at the end.
type nsHandle struct{ name string }

func newNS() (*nsHandle, error) {
	var b [4]byte
	rand.Read(b[:])
	name := "sstflood-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	ns := &nsHandle{name}
	if _, err := ns.Exec("ip", "link", "set", "lo", "up"); err != nil {
		ns.delete()
		return nil, err
	}
	return ns, nil
}

func (ns *nsHandle) delete() { exec.Command("ip", "netns", "delete", ns.name).Run() }

func (ns *nsHandle) Exec(prog string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.name, prog}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %v: %s", prog, args, err, out)
	}
	return string(out), nil
}

// Do runs f on a thread inside the namespace; sockets and processes f
// creates stay there.
func (ns *nsHandle) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns.name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}
