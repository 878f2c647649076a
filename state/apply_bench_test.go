package state

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
)

// benchRowsPerBatch is one ban burst's worth of rows in one transaction.
const benchRowsPerBatch = 10_000

// benchAddr is the i-th of 2^24 distinct addresses in 10.0.0.0/8 (only the
// database sees them).
func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// benchApply runs Apply on a temp-dir Store with a cancellable context, as
// the daemon's writer does (the driver watches a cancellable context per
// Exec), and reports wall and CPU time per row.
func benchApply(b *testing.B, rows int, batch func(iter int) *Batch) {
	s, err := Open(filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		bt := batch(i)
		b.StartTimer()
		if err := s.Apply(ctx, bt); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N * rows)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/row")
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/n, "cpu-ns/row")
}

// BenchmarkApplySources: a flush of 10,000 source rows, each with the few
// accounts a scanner tries (the aggregate's JSON column included), in
// address order (the flood harness's sources count up).
func BenchmarkApplySources(b *testing.B) { benchApplySources(b, nil) }

// BenchmarkApplySourcesRandom: the same rows in a new random order each
// flush, as an attack from addresses all over the Internet hands them over.
func BenchmarkApplySourcesRandom(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	benchApplySources(b, func(rows []SourceUpdate) {
		r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	})
}

func benchApplySources(b *testing.B, reorder func([]SourceUpdate)) {
	rows := make([]SourceUpdate, benchRowsPerBatch)
	for i := range rows {
		s := activity.Source{Addr: benchAddr(i), FirstSeen: t0, LastSeen: t0.Add(time.Second), LastService: "PJSIP", LastUserAgent: "friendly-scanner"}
		s.Counts.AuthFailed, s.Counts.UnknownAccount = 3, 3
		for j := range 3 {
			s.Accounts = append(s.Accounts, activity.AccountCount{Account: strconv.Itoa(100 + j), Count: 2})
		}
		s.DistinctAccounts = 3
		rows[i] = SourceUpdate{Session: int64(i), Source: s}
	}
	benchApply(b, len(rows), func(iter int) *Batch {
		if reorder != nil {
			reorder(rows)
		}
		// Each flush moves last_seen on, as the engine's would.
		for i := range rows {
			rows[i].Source.LastSeen = t0.Add(time.Duration(iter) * time.Second)
		}
		return &Batch{Sources: rows}
	})
}

// BenchmarkApplyBans: a burst of 10,000 bans in one flush; every batch after
// the first upserts rows that exist (offences escalate).
func BenchmarkApplyBans(b *testing.B) { benchApplyBans(b, nil) }

// BenchmarkApplyBansRandom: the same bans in a new random order each flush.
func BenchmarkApplyBansRandom(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	benchApplyBans(b, func(rows []Ban) { r.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] }) })
}

func benchApplyBans(b *testing.B, reorder func([]Ban)) {
	rows := make([]Ban, benchRowsPerBatch)
	for i := range rows {
		rows[i] = Ban{Addr: benchAddr(i), Until: t0.Add(time.Hour), Offences: 1, Reason: "6 failures in 10m0s", Created: t0}
	}
	benchApply(b, len(rows), func(iter int) *Batch {
		if reorder != nil {
			reorder(rows)
		}
		for i := range rows {
			rows[i].Offences = iter + 1
			rows[i].Until = t0.Add(time.Duration(iter+1) * time.Hour)
		}
		return &Batch{Bans: rows}
	})
}

// BenchmarkApplyEventRows: 10,000 event-log rows in one flush, measured like
// the two above (BenchmarkApplyEvents keeps its own shape: 1000 events and
// 100 sources per batch, background context).
func BenchmarkApplyEventRows(b *testing.B) {
	rows := make([]Event, benchRowsPerBatch)
	for i := range rows {
		rows[i] = Event{Time: t0.Add(time.Duration(i)), Addr: benchAddr(i), Type: "InvalidAccountID", Kind: "unknown_account", Service: "PJSIP", Account: "100"}
	}
	benchApply(b, len(rows), func(int) *Batch { return &Batch{Events: rows} })
}
