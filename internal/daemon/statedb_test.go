package daemon

import (
	"bytes"
	"context"
	"database/sql"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/state"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Issue 10: a state DB with garbage in its bans pages was refused only after
// the firewall was up, with no path and no fix (a crash loop). Now the start
// is clean: the file is moved aside (named in the log), the kernel's bans
// are kept and become the new DB's, and the engine holds them.
func TestRunWithACorruptStateDBKeepsTheKernelsBans(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Firewall.Backend, cfg.Firewall.Mode, cfg.Engine.GeoMode = "dry-run", "enforce", "strict"
	cfg.Metrics.Listen = ""
	dbPath := state.Path(cfg.StateDir)

	// A real DB from an earlier run, with 200 bans, then garbage over its
	// bans table's root page.
	st, err := state.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var b state.Batch
	for i := range 200 {
		b.Bans = append(b.Bans, state.Ban{Addr: netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), Until: now.Add(time.Hour),
			Offences: 2, Reason: strings.Repeat("brute force ", 8), Created: now})
	}
	if err := st.Apply(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	st.Close()
	overwriteRootPage(t, dbPath, "bans")

	// The kernel (a dry-run backend playing it) holds what the daemon banned.
	kernel := dryrun.New(dryrun.Options{Mode: "enforce", MaxElem: 1000})
	var want []netip.Addr
	for i := 1; i <= 5; i++ {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		want = append(want, a)
		if err := kernel.Add(context.Background(), firewall.SetBan, firewall.Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	replay := filepath.Join(t.TempDir(), "empty.cap")
	os.WriteFile(replay, nil, 0o600)
	logs := &lockedBuf{}
	err = Run(context.Background(), cfg, Options{Replay: replay, Backend: kernel,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("Run on a corrupt DB = %v, want a clean start\n%s", err, logs)
	}

	asides, _ := filepath.Glob(dbPath + ".corrupt-*Z") // without its -wal and -shm
	if len(asides) != 1 {
		t.Fatalf("moved-aside files: %v, want one", asides)
	}
	if !strings.Contains(logs.String(), "moved_to="+asides[0]) || !strings.Contains(logs.String(), "the state DB is corrupt") {
		t.Errorf("the log does not name the moved file %s:\n%s", asides[0], logs)
	}
	for _, a := range want {
		if ok, _ := kernel.Contains(context.Background(), firewall.SetBan, a); !ok {
			t.Errorf("the kernel lost the ban of %s", a)
		}
	}
	ro, err := state.OpenReadOnly(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := state.Check(context.Background(), dbPath); err != nil {
		t.Errorf("the new DB: %v", err)
	}
	bans, err := ro.ActiveBans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]bool{}
	for _, b := range bans {
		got[b.Addr] = true
	}
	for _, a := range want {
		if !got[a] {
			t.Errorf("the new DB lacks the kernel's ban of %s (has %d bans)", a, len(bans))
		}
	}
}

func overwriteRootPage(t *testing.T, path, table string) {
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
	if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 64)), (root-1)*pageSize+8); err != nil {
		t.Fatal(err)
	}
}
