package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeBans makes a real database holding n bans, closed (WAL checkpointed).
func writeBans(t *testing.T, n int) string {
	t.Helper()
	path := Path(t.TempDir())
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var b Batch
	for i := range n {
		b.Bans = append(b.Bans, Ban{Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), Until: now.Add(time.Hour),
			Offences: 1, Reason: strings.Repeat("brute force ", 10), Created: now})
		b.Events = append(b.Events, Event{Time: now, Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), Type: "InvalidPassword",
			Kind: "auth_failed", Service: "PJSIP", Account: strings.Repeat("a", 50)})
	}
	if err := st.Apply(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// CorruptTablePage overwrites bytes in the middle of the root page of
// table in the database at path (closed), as a disk or a stray write would.
func corruptTablePage(t *testing.T, path, table string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	if err := db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = ?", table).Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	garbage := []byte(strings.Repeat("\xde\xad\xbe\xef", 64))
	if _, err := f.WriteAt(garbage, (root-1)*pageSize+8); err != nil {
		t.Fatal(err)
	}
}

func TestCheckFindsGarbageInTheBansPages(t *testing.T) {
	path := writeBans(t, 200)
	if err := Check(context.Background(), path); err != nil {
		t.Fatalf("a good database: %v", err)
	}
	corruptTablePage(t, path, "bans")
	err := Check(context.Background(), path)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Check = %v, want ErrCorrupt naming the file", err)
	}
}

// Garbage outside the bans (the event log) is found too: no silent run.
func TestCheckFindsGarbageElsewhere(t *testing.T) {
	path := writeBans(t, 200)
	corruptTablePage(t, path, "events")
	if err := Check(context.Background(), path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check = %v, want ErrCorrupt", err)
	}
}

func TestCheckNotADatabaseAndMissing(t *testing.T) {
	dir := t.TempDir()
	if err := Check(context.Background(), Path(dir)); err != nil {
		t.Errorf("a missing file (first start): %v", err)
	}
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, []byte(strings.Repeat("this is not sqlite ", 400)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(context.Background(), junk); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a file that is not a database: %v, want ErrCorrupt", err)
	}
}

func TestMoveAsideAndAdoptKernel(t *testing.T) {
	path := writeBans(t, 3)
	os.WriteFile(path+"-wal", []byte("x"), 0o600)
	at := time.Date(2026, 12, 7, 20, 1, 2, 0, time.UTC)
	aside, err := MoveAside(path, at)
	if err != nil {
		t.Fatal(err)
	}
	if aside != path+".corrupt-20261207T200102Z" {
		t.Errorf("moved to %s", aside)
	}
	for _, p := range []string{aside, aside + "-wal"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the corrupt file is still at %s", path)
	}
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ban := netip.MustParsePrefix("203.0.113.9/32")
	push := netip.MustParsePrefix("198.51.100.7/32")
	nb, na, err := st.AdoptKernel(context.Background(),
		[]KernelEntry{{Prefix: ban, Timeout: time.Hour}},
		[]KernelEntry{{Prefix: push, Timeout: time.Hour}, {Prefix: netip.MustParsePrefix("198.51.100.0/24")}})
	if err != nil || nb != 1 || na != 1 {
		t.Fatalf("AdoptKernel = %d, %d, %v; want 1 ban, 1 allow (the permanent range comes from the config)", nb, na, err)
	}
	bans, _ := st.ActiveBans(context.Background())
	if len(bans) != 1 || bans[0].Addr != ban.Addr() || bans[0].Until.Sub(time.Now()) < 59*time.Minute {
		t.Errorf("bans = %+v", bans)
	}
	allows, _ := st.LearnedAllows(context.Background())
	if len(allows) != 1 || allows[0].Prefix != push || allows[0].How != HowKernel {
		t.Errorf("allows = %+v", allows)
	}
}

// A full disk (SQLite's max_page_count reached: the same SQLITE_FULL) shows
// in WriteHealth until a write succeeds again.
func TestWriteHealthOnAFullDatabase(t *testing.T) {
	st, err := Open(Path(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.db.SetMaxOpenConns(1) // the pragma below is per connection
	var pages int64
	if err := st.db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	big := Batch{}
	for i := range 500 {
		big.Events = append(big.Events, Event{Time: time.Now(), Addr: netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}),
			Type: "InvalidPassword", Kind: "auth_failed", Service: "PJSIP", Account: strings.Repeat("x", 200)})
	}
	werr := st.Apply(context.Background(), &big)
	if werr == nil {
		t.Fatal("a write into a full database succeeded")
	}
	since, last, n := st.WriteHealth()
	if since.IsZero() || last == nil || n != 1 {
		t.Fatalf("WriteHealth = %v, %v, %d; want failing since now with the error", since, last, n)
	}
	if _, err := st.db.Exec("PRAGMA max_page_count = 1000000"); err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(context.Background(), &Batch{Flags: []Flag{{Addr: netip.MustParseAddr("203.0.113.1"), Kind: "k", Note: "n", Time: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	if since, last, _ := st.WriteHealth(); !since.IsZero() || last != nil {
		t.Errorf("after a good write: WriteHealth = %v, %v; want healthy", since, last)
	}
}
