package engine

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// TestRestoreStreamsBansInChunks: more stored bans than one chunk are all
// restored, in bulk adds of at most restoreChunk entries, longest-running
// first; expired rows older than the memory window are not read back, and
// expired recent ones keep their offence count without a kernel entry.
func TestRestoreStreamsBansInChunks(t *testing.T) {
	clock := newClock()
	dbPath := t.TempDir() + "/" + state.FileName
	st, err := state.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := clock.Now()
	const n = 2*restoreChunk + 5
	var b state.Batch
	for i := range n {
		b.Bans = append(b.Bans, state.Ban{Addr: v6(i), Until: now.Add(time.Hour + time.Duration(i)*time.Second),
			Offences: 1, Reason: "test", Created: now})
	}
	expired := netip.MustParseAddr("203.0.113.7")
	b.Bans = append(b.Bans, state.Ban{Addr: expired, Until: now.Add(-time.Minute), Offences: 3, Reason: "old", Created: now.Add(-2 * time.Hour)})
	if err := st.Apply(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	st.Close()

	r := newRig(t, rigOpt{clock: clock, dbPath: dbPath, cfg: func(c *Options) { c.BanMaxElem = n + 10 }})
	var adds, entries int
	var prevLast time.Duration
	for _, op := range r.fw.Ops() {
		if op.Verb != "add" || op.Set != firewall.SetBan {
			continue
		}
		adds++
		if len(op.Entries) > restoreChunk {
			t.Errorf("a bulk add of %d entries, want at most %d", len(op.Entries), restoreChunk)
		}
		for _, e := range op.Entries {
			if entries > 0 && e.Timeout > prevLast {
				t.Fatalf("entry %d (%v left) after one with %v left: want longest-running first", entries, e.Timeout, prevLast)
			}
			prevLast = e.Timeout
			entries++
		}
	}
	if entries != n || adds != 3 {
		t.Fatalf("%d entries in %d adds, want %d in 3", entries, adds, n)
	}
	if got := r.eng.Snapshot().ActiveBans; got != n {
		t.Errorf("ActiveBans = %d, want %d", got, n)
	}
	if !r.banned(v6(0).String()) || !r.banned(v6(n-1).String()) || r.banned(expired.String()) {
		t.Error("want every unexpired ban in the set and the expired one out")
	}
	r.eng.bans.bansMu.Lock()
	bi, ok := r.eng.bans.byAddr.Get(expired)
	r.eng.bans.bansMu.Unlock()
	if !ok || bi.offences != 3 || bi.active {
		t.Errorf("expired ban in memory = %+v %v, want its 3 offences remembered, not active", bi, ok)
	}
}

func v6(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0x5e, 14: byte(i >> 8), 15: byte(i)})
}
