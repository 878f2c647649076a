package engine

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/iptables"
	"github.com/sipsentry/sipsentry/internal/netnstest"
	"github.com/sipsentry/sipsentry/state"
)

// BenchmarkRestore100kStart: 100k stored bans to the kernel ban set
// through the engine, timed from opening the state DB to Start's return
// (state.Open, New, Start: the DB read, the ban map, the kernel load, the
// allow set), on the iptables backend in a namespace. Three ways in the
// same run, each into an empty set: Start with the backend as it is (a
// firewall.Loader: one BulkLoad fed while the DB is read), Start with the
// backend hidden behind firewall.Backend only (the former path: Adds of
// restoreChunk, one `ipset restore` process each), and a raw `ipset
// restore` of the same 100k adds prepared in advance (no DB, no Go).
// Goal (issue 11): streamed < 1 s.
//
//	CI=true go test -run '^$' -bench Restore100kStart -benchtime=3x ./engine/
func BenchmarkRestore100kStart(b *testing.B) {
	netnstest.RequireRoot(b)
	netnstest.RequireTool(b, "ip", "ipset", "iptables", "ip6tables")
	const n = 100000
	ns := netnstest.NewNS(b, "rst")
	be, err := iptables.New(iptables.Options{Mode: firewall.ModeEnforce, Chain: "SIPSENTRY", InputPosition: 1,
		UDPPorts: []firewall.PortRange{{From: 5060, To: 5060}}, Netns: ns.Name, BanMaxElem: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = be.Down(context.Background())
		be.Close()
	})
	if err := be.Up(bg); err != nil {
		b.Fatal(err)
	}

	// The stored bans: 100k IPv4 addresses from 100.64.0.0 (only set
	// entries: no packet is sent), 1–2 h left, as a flood leaves them.
	dbPath := filepath.Join(b.TempDir(), state.FileName)
	st, err := state.Open(dbPath)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	var batch state.Batch
	var script strings.Builder
	a := netip.MustParseAddr("100.64.0.0")
	for i := range n {
		until := now.Add(time.Duration(3600+i%3600) * time.Second)
		batch.Bans = append(batch.Bans, state.Ban{Addr: a, Until: until, Offences: 1, Reason: "5 failed auths", Created: now})
		// Raw baseline: the same adds as the backend would send (timeout in
		// seconds, the engine's comment).
		script.WriteString("add sipsentry-ban-v4 " + a.String() + " timeout " + strconv.Itoa(3600+i%3600) + ` comment "sipsentry: 5 failed auths"` + "\n")
		a = a.Next()
	}
	if err := st.Apply(bg, &batch); err != nil {
		b.Fatal(err)
	}
	st.Close()
	batch = state.Batch{}
	raw := []byte(script.String())

	o := testConfig()
	o.BanMaxElem = 1 << 20
	kernelBans := func() int {
		infos, err := be.SetInfos(bg)
		if err != nil {
			b.Fatal(err)
		}
		c := 0
		for _, si := range infos {
			if si.Set == firewall.SetBan {
				c += si.Entries
			}
		}
		return c
	}
	empty := func() {
		if err := be.Replace(bg, firewall.SetBan, nil); err != nil {
			b.Fatal(err)
		}
		if c := kernelBans(); c != 0 {
			b.Fatalf("%d bans left in the kernel, want an empty set", c)
		}
	}
	launch := func(fw firewall.Backend) time.Duration {
		t0 := time.Now()
		st, err := state.Open(dbPath)
		if err != nil {
			b.Fatal(err)
		}
		e, err := New(o, Deps{Firewall: fw, Geo: testGeo, Store: st, Resolver: noDNS{},
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.Start(bg); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t0)
		st.Close()
		if c := kernelBans(); c != n {
			b.Fatalf("%d bans in the kernel after Start, want %d", c, n)
		}
		return d
	}

	var streamed, chunked, base time.Duration
	b.ResetTimer()
	for range b.N {
		empty()
		streamed += launch(be)
		empty()
		chunked += launch(addOnly{be})
		empty()
		var out bytes.Buffer
		var d time.Duration
		if err := ns.Do(func() error {
			cmd := exec.Command("ipset", "-exist", "restore")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(raw), &out, &out
			t0 := time.Now()
			err := cmd.Run()
			d = time.Since(t0)
			return err
		}); err != nil {
			b.Fatalf("raw ipset restore: %v: %.300s", err, out.String())
		}
		base += d
		if c := kernelBans(); c != n {
			b.Fatalf("%d bans in the kernel after the raw restore, want %d", c, n)
		}
	}
	b.StopTimer()
	nn := float64(b.N)
	b.ReportMetric(float64(streamed.Microseconds())/1000/nn, "start-bulkload-ms")
	b.ReportMetric(float64(chunked.Microseconds())/1000/nn, "start-chunked-adds-ms")
	b.ReportMetric(float64(base.Microseconds())/1000/nn, "raw-restore-ms")
	b.ReportMetric(float64(streamed)/float64(base), "bulkload-ratio-vs-raw")
	b.ReportMetric(float64(chunked)/float64(base), "chunked-ratio-vs-raw")
	b.ReportMetric(0, "ns/op") // the figures above are per way; ns/op sums all three
}
