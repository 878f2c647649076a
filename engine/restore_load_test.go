package engine

import (
	"context"
	"errors"
	"iter"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/state"
)

// addOnly hides every method but firewall.Backend's: a backend that is not
// a firewall.Loader, so Start takes the chunked Add path.
type addOnly struct{ firewall.Backend }

// failingLoader's BulkLoad sends the first `after` entries of the ban set
// to the backend's Add and then fails with err; after < 0: it fails before
// reading anything (as the iptables backend does when the set is not ours).
type failingLoader struct {
	firewall.Backend
	after int
	err   error
	calls int
}

func (f *failingLoader) BulkLoad(ctx context.Context, set firewall.Set, seq iter.Seq[firewall.Entry]) (firewall.BulkResult, error) {
	f.calls++
	var r firewall.BulkResult
	if f.after < 0 {
		return r, f.err
	}
	for e := range seq {
		if r.Loaded == f.after {
			return r, f.err
		}
		if err := f.Backend.Add(ctx, set, e); err != nil {
			return r, err
		}
		r.Loaded++
	}
	return r, nil
}

// restoreFixture stores the rows every restore rule applies to and returns
// the DB's path and the addresses by role.
func restoreFixture(t *testing.T, now time.Time) (dbPath string, want restoreWant) {
	t.Helper()
	dbPath = filepath.Join(t.TempDir(), state.FileName)
	st, err := state.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var b state.Batch
	const n = restoreChunk + 300 // more than one chunk of the Add path
	for i := range n {
		b.Bans = append(b.Bans, state.Ban{Addr: v6(i), Until: now.Add(time.Hour + time.Duration(i)*time.Second),
			Offences: 1, Reason: "test", Created: now})
	}
	want.kernelMax = netip.PrefixFrom(v6(n-1), 128) // the longest-running
	want.host = netip.MustParseAddr("198.51.100.1") // the rig's host address: never banned
	want.monitor = netip.MustParseAddr("203.0.113.9")
	want.manual = netip.MustParseAddr("203.0.113.10")
	want.expired = netip.MustParseAddr("203.0.113.11")
	b.Bans = append(b.Bans,
		state.Ban{Addr: want.host, Until: now.Add(3 * time.Hour), Offences: 1, Reason: "forged", Created: now},
		state.Ban{Addr: want.monitor, Until: now.Add(2 * time.Hour), Offences: 1, Reason: "would ban", Created: now, Monitor: true},
		state.Ban{Addr: want.manual, Until: now.Add(5 * time.Hour), Offences: 1, Reason: "by hand", Created: now, Origin: state.OriginManual, UID: 1000},
		state.Ban{Addr: want.expired, Until: now.Add(-time.Minute), Offences: 4, Reason: "old", Created: now.Add(-time.Hour)})
	if err := st.Apply(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	want.stored = n + 1 // the stored bans the kernel may take: the n and the manual one
	return dbPath, want
}

type restoreWant struct {
	stored                         int
	kernelMax                      netip.Prefix
	host, monitor, manual, expired netip.Addr
}

// TestRestoreLoaderAndAddPathsAgree: the streamed restore (one BulkLoad fed
// while the DB is read) and the chunked Add path for a backend that is not
// a Loader leave the same kernel set and the same memory: never-ban rows
// kept but not in the kernel, monitor rows listed and not enforced, the
// manual ban restored as external with its uid, the expired row remembered
// without an entry, and with ban_maxelem below the stored count the
// shortest-running ones left out and counted.
func TestRestoreLoaderAndAddPathsAgree(t *testing.T) {
	clock := newClock()
	now := clock.Now()
	for _, full := range []bool{false, true} {
		type outcome struct {
			kernel  []firewall.Entry
			bans    []BanRecord
			refused uint64
			ops     []string
		}
		results := map[string]outcome{}
		for _, path := range []string{"loader", "adds"} {
			dbPath, want := restoreFixture(t, now)
			fw := dryrun.New(dryrun.Options{Mode: "enforce", Now: clock.Now})
			maxElem := want.stored + 10
			if full {
				maxElem = want.stored - 100
			}
			r := newRig(t, rigOpt{clock: clock, dbPath: dbPath, noRun: true, cfg: func(o *Options) { o.BanMaxElem = maxElem },
				deps: func(d *Deps) {
					d.Firewall = fw
					if path == "adds" {
						d.Firewall = addOnly{fw}
					}
				}})
			kernel, err := fw.List(bg, firewall.SetBan)
			if err != nil {
				t.Fatal(err)
			}
			var ops []string
			for _, op := range fw.Ops() {
				if op.Set == firewall.SetBan {
					ops = append(ops, op.Verb)
				}
			}
			slices.SortFunc(kernel, func(x, y firewall.Entry) int { return x.Prefix.Addr().Compare(y.Prefix.Addr()) })
			results[path] = outcome{kernel: kernel, bans: r.eng.Bans(now), refused: r.eng.fullRefusals.Load(), ops: ops}

			wantKernel := want.stored
			if full {
				wantKernel = maxElem
			}
			if len(kernel) != wantKernel {
				t.Errorf("%s full=%v: %d entries in the kernel, want %d", path, full, len(kernel), wantKernel)
			}
			if got := r.eng.Snapshot().ActiveBans; got != wantKernel {
				t.Errorf("%s full=%v: ActiveBans = %d, want %d", path, full, got, wantKernel)
			}
			if full && r.eng.fullRefusals.Load() != uint64(want.stored-maxElem) {
				t.Errorf("%s: %d full refusals, want %d", path, r.eng.fullRefusals.Load(), want.stored-maxElem)
			}
			// fw, not r.fw: the rig only adopts a bare *dryrun.Backend.
			banned := func(a netip.Addr) bool {
				ok, err := fw.Contains(bg, firewall.SetBan, a)
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			for _, a := range []netip.Addr{want.host, want.monitor, want.expired} {
				if banned(a) {
					t.Errorf("%s full=%v: %s in the kernel", path, full, a)
				}
			}
			if !banned(want.kernelMax.Addr()) || !banned(want.manual) {
				t.Errorf("%s full=%v: the longest-running bans are not in the kernel", path, full)
			}
			if !strings.Contains(r.logs.String(), "stored ban not put in the kernel") {
				t.Errorf("%s: no warning for the never-ban row", path)
			}
			r.eng.bans.bansMu.Lock()
			ext, isExt := r.eng.bans.external[keyOf(want.manual)]
			bi, _ := r.eng.bans.byAddr.Get(want.expired)
			hostBan, hostKept := r.eng.bans.byAddr.Get(want.host)
			r.eng.bans.bansMu.Unlock()
			if !isExt || ext.uid != 1000 || ext.origin != state.OriginManual {
				t.Errorf("%s: manual ban restored as %+v %v, want external, uid 1000", path, ext, isExt)
			}
			if bi.offences != 4 || bi.active {
				t.Errorf("%s: expired ban in memory = %+v, want 4 offences, not active", path, bi)
			}
			if !hostKept || hostBan.active {
				t.Errorf("%s: never-ban row in memory = %+v %v, want kept, not active", path, hostBan, hostKept)
			}
			r.stop()
		}
		l, a := results["loader"], results["adds"]
		if !slices.EqualFunc(l.kernel, a.kernel, func(x, y firewall.Entry) bool {
			return x.Prefix == y.Prefix && x.Comment == y.Comment
		}) {
			t.Errorf("full=%v: the kernel sets differ between the paths (%d vs %d entries)", full, len(l.kernel), len(a.kernel))
		}
		if !slices.Equal(l.bans, a.bans) || l.refused != a.refused {
			t.Errorf("full=%v: memory differs between the paths: %d vs %d bans, %d vs %d refused", full, len(l.bans), len(a.bans), l.refused, a.refused)
		}
		// The Add path makes ceil(stored/restoreChunk) adds, the dry-run
		// Loader one per 4096 entries: the same shape, from different code.
		if len(a.ops) < 2 || len(l.ops) < 1 {
			t.Errorf("full=%v: ban set ops: loader %v, adds %v", full, l.ops, a.ops)
		}
	}
}

// TestRestoreLoadFailureReported: a BulkLoad that fails (before reading, or
// part way) makes Start return the error with how many were restored, and
// every stored ban is still in memory; a full set is logged and not an
// error (what fit protects).
func TestRestoreLoadFailureReported(t *testing.T) {
	clock := newClock()
	now := clock.Now()
	kernelErr := errors.New("netlink: operation not permitted")
	for _, c := range []struct {
		name    string
		after   int
		err     error
		wantErr bool
	}{
		{"before reading", -1, kernelErr, true},
		{"part way", 1000, kernelErr, true},
		{"set full", 1000, firewall.ErrSetFull, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dbPath, want := restoreFixture(t, now)
			st, err := state.Open(dbPath)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			fw := &failingLoader{Backend: dryrun.New(dryrun.Options{Mode: "enforce", Now: clock.Now}), after: c.after, err: c.err}
			logs := &logBuf{}
			o := testConfig()
			o.BanMaxElem = want.stored + 10
			e, err := New(o, Deps{Firewall: fw, Geo: testGeo, Store: st, Resolver: noDNS{}, Now: clock.Now,
				Logger:    slog.New(slog.NewTextHandler(logs, nil)),
				HostAddrs: []netip.Addr{want.host}})
			if err != nil {
				t.Fatal(err)
			}
			err = e.Start(bg)
			if fw.calls != 1 {
				t.Errorf("BulkLoad called %d times, want once", fw.calls)
			}
			restored := max(c.after, 0)
			if c.wantErr {
				if err == nil || !errors.Is(err, kernelErr) || !strings.Contains(err.Error(), "restoring bans (") {
					t.Errorf("Start = %v, want the load's error with the count restored", err)
				}
			} else if err != nil {
				t.Errorf("Start = %v, want a full set only logged", err)
			}
			if !strings.Contains(logs.String(), "restoring bans failed") {
				t.Errorf("no error logged: %s", logs)
			}
			got, err := fw.List(bg, firewall.SetBan)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != restored {
				t.Errorf("%d entries in the kernel, want %d", len(got), restored)
			}
			// Every row read on after the kernel stopped: all in memory.
			if n := len(e.Bans(now)); n != want.stored+2 { // + the never-ban and the monitor rows
				t.Errorf("%d bans in memory after a failed load, want %d", n, want.stored+2)
			}
		})
	}
}
