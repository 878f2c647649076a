package state

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"
)

var t0 = time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), FileName)
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Now = func() time.Time { return t0 }
	t.Cleanup(func() { s.Close() })
	return s, path
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func src(a string, failed int, accounts ...string) activity.Source {
	s := activity.Source{Addr: addr(a), FirstSeen: t0.Add(-time.Hour), LastSeen: t0, LastService: "PJSIP"}
	s.Counts.AuthFailed = failed
	for _, acc := range accounts {
		s.Accounts = append(s.Accounts, activity.AccountCount{Account: acc, Count: 1})
	}
	s.DistinctAccounts = len(accounts)
	return s
}

func TestOpenIsWAL(t *testing.T) {
	s, _ := open(t)
	var mode string
	if err := s.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode %q %v, want wal", mode, err)
	}
	var sync int
	if err := s.db.QueryRow(`PRAGMA synchronous`).Scan(&sync); err != nil || sync != 1 {
		t.Fatalf("synchronous %d %v, want 1 (NORMAL)", sync, err)
	}
}

func TestStatusesAndEvidence(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	b := &Batch{
		Sources: []SourceUpdate{
			{Session: 1, Source: src("203.0.113.11", 5, "1001")},
			{Session: 2, Source: src("203.0.113.31", 0)},
			{Session: 3, Source: src("203.0.113.21", 0)},
			{Session: 4, Source: src("198.51.100.5", 1)},
			{Session: 5, Source: src("203.0.113.40", 2)},
			{Session: 6, Source: src("203.0.113.50", 9)},
		},
		Bans: []Ban{
			{Addr: addr("203.0.113.11"), Until: t0.Add(time.Hour), Offences: 2, Reason: "5 failures in 10m0s", Created: t0},
			{Addr: addr("203.0.113.40"), Until: t0.Add(-time.Minute), Offences: 1, Reason: "old", Created: t0.Add(-2 * time.Hour)},
			{Addr: addr("203.0.113.50"), Until: t0.Add(time.Hour), Offences: 1, Reason: "slow scan", Created: t0, Monitor: true},
		},
		Allows: []Allow{
			{Prefix: netip.MustParsePrefix("203.0.113.31/32"), Until: t0.Add(720 * time.Hour), PushEvidence: PushEvidence{
				How: HowUserAgent, Account: "1001", UserAgent: "Bria Push Service", URI: "sip:1001@203.0.113.31:5062", AOR: "1001",
				FirstSeen: t0, LastSeen: t0}},
			{Prefix: netip.MustParsePrefix("198.51.100.0/24"), PushEvidence: PushEvidence{How: HowStatic, FirstSeen: t0, LastSeen: t0}},
			{Prefix: netip.MustParsePrefix("203.0.113.60/32"), Until: t0.Add(720 * time.Hour), PushEvidence: PushEvidence{How: HowSeed, PTR: "push.softphone.com", FirstSeen: t0, LastSeen: t0}},
		},
		Flags:  []Flag{{Addr: addr("203.0.113.21"), Kind: "foreign_login", Note: "stolen?", Time: t0}},
		Events: []Event{{Time: t0, Addr: addr("203.0.113.11"), Type: "ChallengeResponseFailed", Kind: "auth_failed", Service: "PJSIP", Account: "1001"}},
	}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Sources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"203.0.113.11": StatusBanned, "203.0.113.31": StatusLearnedPush, "203.0.113.21": StatusFlagged,
		"198.51.100.5": StatusAllowed, "203.0.113.40": StatusNone, "203.0.113.50": StatusWouldBan,
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(recs), len(want), recs)
	}
	for _, r := range recs {
		if r.Status != want[r.Addr.String()] {
			t.Errorf("%s: status %q, want %q", r.Addr, r.Status, want[r.Addr.String()])
		}
	}
	byAddr := map[string]SourceRecord{}
	for _, r := range recs {
		byAddr[r.Addr.String()] = r
	}
	if r := byAddr["203.0.113.11"]; r.Offences != 2 || !r.BannedUntil.Equal(t0.Add(time.Hour)) || r.Counts.AuthFailed != 5 || r.Accounts[0].Account != "1001" {
		t.Errorf("banned record %+v", r)
	}
	if r := byAddr["203.0.113.40"]; r.Offences != 1 || !r.BannedUntil.IsZero() {
		t.Errorf("expired ban: offences must stay, until must not show: %+v", r)
	}
	if r := byAddr["203.0.113.31"]; r.Push == nil || r.Push.UserAgent != "Bria Push Service" || r.Push.AOR != "1001" {
		t.Errorf("push record %+v", r)
	}
	sum, err := s.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sources != 6 || sum.ActiveBans != 1 || sum.WouldBans != 1 || sum.BansEver != 3 || sum.LearnedAllows != 3 || sum.Flags != 1 || sum.Events != 1 {
		t.Errorf("summary %+v", sum)
	}
	act, err := s.ActiveBans(ctx)
	if err != nil || len(act) != 2 {
		t.Errorf("active bans %+v %v", act, err)
	}
	// A lift ends the ban and keeps the offence count.
	if err := s.Apply(ctx, &Batch{Lifts: []netip.Addr{addr("203.0.113.11")}}); err != nil {
		t.Fatal(err)
	}
	all, _ := s.Bans(ctx)
	for _, b := range all {
		if b.Addr == addr("203.0.113.11") && (b.Until.After(t0) || b.Offences != 2) {
			t.Errorf("lifted ban %+v", b)
		}
	}
}

// Sessions of one address (evicted and back) merge in Sources.
func TestSessionsMerge(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	a := src("203.0.113.9", 3, "100", "101")
	a.FirstSeen = t0.Add(-48 * time.Hour)
	b := src("203.0.113.9", 2, "101", "102")
	b.LastUserAgent = "friendly-scanner"
	if err := s.Apply(ctx, &Batch{Sources: []SourceUpdate{{Session: 1, Source: a}, {Session: 7, Source: b}}}); err != nil {
		t.Fatal(err)
	}
	// Rewriting a session replaces it, it does not add.
	if err := s.Apply(ctx, &Batch{Sources: []SourceUpdate{{Session: 7, Source: b}}}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Sources(ctx)
	if err != nil || len(recs) != 1 {
		t.Fatalf("%+v %v", recs, err)
	}
	r := recs[0]
	if r.Counts.AuthFailed != 5 || r.DistinctAccounts != 3 || !r.FirstSeen.Equal(a.FirstSeen) || r.LastUserAgent != "friendly-scanner" {
		t.Errorf("merged %+v", r)
	}
	if top := r.TopAccounts(1); top[0].Account != "101" || top[0].Count != 2 {
		t.Errorf("top account %+v", top)
	}
	if n, err := s.MaxSession(ctx); err != nil || n != 7 {
		t.Errorf("max session %d %v", n, err)
	}
}

// The daemon writes while `sipsentry sources` reads the same file.
func TestReadOnlyWhileWriting(t *testing.T) {
	s, path := open(t)
	ctx := context.Background()
	if err := s.Apply(ctx, &Batch{Sources: []SourceUpdate{{Session: 1, Source: src("203.0.113.1", 1)}}}); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Apply(ctx, &Batch{Events: []Event{{Time: t0}}}); !errors.Is(err, ErrReadOnly) {
		t.Errorf("write on read-only store: %v", err)
	}
	// SQLite itself refuses too (mode=ro reached the driver).
	if _, err := ro.db.Exec(`INSERT INTO meta(key, value) VALUES ('x', 'y')`); err == nil || !strings.Contains(err.Error(), "readonly") {
		t.Errorf("raw write through the read-only handle: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range 200 {
			ev := make([]Event, 50)
			for j := range ev {
				ev[j] = Event{Time: t0.Add(time.Duration(i*50+j) * time.Millisecond), Addr: addr("203.0.113.1"), Type: "InvalidAccountID"}
			}
			if err := s.Apply(ctx, &Batch{Events: ev, Sources: []SourceUpdate{{Session: 1, Source: src("203.0.113.1", i)}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 50 {
		if _, err := ro.Sources(ctx); err != nil {
			t.Fatalf("reader: %v", err)
		}
		if _, err := ro.Summary(ctx); err != nil {
			t.Fatalf("reader: %v", err)
		}
	}
	wg.Wait()
	sum, err := ro.Summary(ctx)
	if err != nil || sum.Events != 200*50 {
		t.Errorf("summary after writes %+v %v", sum, err)
	}
	if _, err := OpenReadOnly(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Error("OpenReadOnly of a missing file succeeded")
	}
}

func TestPrune(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	var ev []Event
	for i := range 100 {
		ev = append(ev, Event{Time: t0.Add(time.Duration(i) * time.Hour), Addr: addr("203.0.113.1"), Type: "x"})
	}
	old := src("203.0.113.2", 1)
	old.LastSeen = t0.Add(-100 * time.Hour)
	oldBanned := src("203.0.113.3", 1)
	oldBanned.LastSeen = t0.Add(-100 * time.Hour)
	if err := s.Apply(ctx, &Batch{Events: ev, Sources: []SourceUpdate{{Session: 1, Source: old}, {Session: 2, Source: oldBanned}},
		Bans: []Ban{{Addr: addr("203.0.113.3"), Until: t0.Add(-99 * time.Hour), Offences: 1, Reason: "r", Created: t0.Add(-100 * time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	n, err := s.Prune(ctx, t0.Add(10*time.Hour), 50)
	if err != nil {
		t.Fatal(err)
	}
	if n != 50 {
		t.Errorf("pruned %d events, want 10 by age + 40 by count", n)
	}
	sum, _ := s.Summary(ctx)
	if sum.Events != 50 || !sum.FirstEvent.Equal(t0.Add(50*time.Hour)) {
		t.Errorf("after prune %+v", sum)
	}
	recs, _ := s.Sources(ctx)
	if len(recs) != 1 || recs[0].Addr != addr("203.0.113.3") {
		t.Errorf("sources after prune %+v: the unbanned old one goes, the one with offence history stays", recs)
	}
}

func TestMergeSourceCapsAccounts(t *testing.T) {
	var a, b activity.Source
	a.Addr = addr("203.0.113.1")
	for i := range activity.MaxAccounts {
		a.Accounts = append(a.Accounts, activity.AccountCount{Account: string(rune('a' + i)), Count: 1})
		b.Accounts = append(b.Accounts, activity.AccountCount{Account: string(rune('A' + i)), Count: 2})
	}
	a.DistinctAccounts, b.DistinctAccounts = 20, activity.MaxAccounts
	m := MergeSource(a, b)
	if len(m.Accounts) != activity.MaxAccounts || m.Accounts[0].Count != 2 || m.DistinctAccounts != 20+activity.MaxAccounts {
		t.Errorf("merged %d accounts, first %+v, distinct %d", len(m.Accounts), m.Accounts[0], m.DistinctAccounts)
	}
	if m.Addr != a.Addr {
		t.Error("address lost")
	}
}

// BenchmarkApplyEvents: event-log rows written per second in batches of
// 1000 (one transaction each), the writer's throughput under a flood.
func BenchmarkApplyEvents(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), FileName))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ev := make([]Event, 1000)
	for i := range ev {
		ev[i] = Event{Time: t0.Add(time.Duration(i)), Addr: addr("203.0.113.1"), Type: "InvalidAccountID", Kind: "unknown_account", Service: "PJSIP", Account: "100"}
	}
	src := make([]SourceUpdate, 100)
	for i := range src {
		src[i] = SourceUpdate{Session: int64(i), Source: activity.Source{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Accounts: []activity.AccountCount{{Account: "100", Count: 3}}}}
	}
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		if err := s.Apply(context.Background(), &Batch{Events: ev, Sources: src}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(ev))/b.Elapsed().Seconds(), "rows/wall-s")
	b.ReportMetric(float64(b.N*len(ev))/(cpuTime()-c0).Seconds(), "rows/cpu-s")
}

// cpuTime is the process's user+system CPU time (the machine is shared:
// wall time measures the neighbours).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
