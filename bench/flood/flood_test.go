package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// The CI-sized flood: 10,000 sources × 6 failures at 6,000 events/s (10 s)
// against the real daemon with the iptables backend. Every source over the
// threshold must be in the kernel's ban set. engine.max_sources is set far
// below the number of sources: the per-source report aggregate may be
// evicted, the failure memory that decides must not forget (before it, this
// flood got 0 of 10,000 banned).
func TestFlood10k(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireTool(t, "ip", "ipset", "iptables")
	ns := netnstest.NewNS(t, "flood")
	root := testpath.RepoRoot(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "sipsentry")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/sipsentry")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var progress strings.Builder
	o := options{
		sources: 10000, fails: 6, rate: 6000, tick: 10 * time.Millisecond,
		bin: bin, geoDir: testpath.Shared(t, "geo"), dir: dir,
		engine:   "max_sources = 2000",
		wait:     90 * time.Second,
		progress: &progress,
	}
	res, err := run(context.Background(), ns, o)
	t.Logf("%s\n%s", progress.String(), res)
	if err != nil {
		t.Fatalf("flood: %v (daemon log %s)", err, res.daemonLog)
	}
	if res.overThreshold != o.sources {
		t.Fatalf("%d sources over the threshold, want %d (every source got 6 failures)", res.overThreshold, o.sources)
	}
	if res.missing != 0 || res.inKernel != res.overThreshold {
		t.Fatalf("%d of %d over-threshold sources in the kernel ban set, %d missing (e.g. %v)",
			res.inKernel, res.overThreshold, res.missing, res.missingSample)
	}
	if res.dropped != 0 {
		t.Errorf("%v AMI events dropped at the queue", res.dropped)
	}
}
