package e2e

import (
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Issue 10: a state DB with garbage in its bans pages was refused only after
// the firewall was up, with no path and no fix: a crash loop under systemd.
// Here, on the real kernel: a manual ban, kill -9, bytes overwritten in the
// bans table's root page, restart. The start is clean, the kernel's ban is
// kept and is in the new DB, and the bad file was moved aside and named in
// the log.
func TestCorruptStateDBRestartKeepsTheKernelsBans(t *testing.T) {
	s := newCtlSetup(t, "corruptdb", "")
	d := s.start(t)
	s.mustCLI(t, "ban", "203.0.113.50", "--for", "2h", "--reason", "before the corruption")
	eventually(t, "the ban in the state DB", func() (bool, string) { return s.dbBanned(t, "203.0.113.50") })
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	d.wait()

	// Fold the WAL into the file (as a clean shutdown would), then garbage
	// over the bans table's root page.
	db, err := sql.Open("sqlite", "file:"+s.stateDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	var root, pageSize int64
	if err := db.QueryRow("SELECT rootpage FROM sqlite_master WHERE name = 'bans'").Scan(&root); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow("PRAGMA page_size").Scan(&pageSize); err != nil {
		t.Fatal(err)
	}
	db.Close()
	f, err := os.OpenFile(s.stateDB, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xde\xad\xbe\xef", 64)), (root-1)*pageSize+8); err != nil {
		t.Fatal(err)
	}
	f.Close()

	d2 := s.start(t)
	eventually(t, "the ban rebuilt into the new DB", func() (bool, string) { return s.dbBanned(t, "203.0.113.50") })
	if !s.inKernel(t, "203.0.113.50") {
		t.Errorf("the kernel lost the ban: %v", setMembers(t, s.ns, "sipsentry-ban-v4"))
	}
	asides, _ := filepath.Glob(s.stateDB + ".corrupt-*Z")
	if len(asides) != 1 {
		t.Fatalf("moved-aside DB files: %v, want one", asides)
	}
	time.Sleep(200 * time.Millisecond)
	select {
	case <-d2.done:
		t.Fatalf("the daemon exited after the restart: %v", d2.err)
	default:
	}
	log, _ := os.ReadFile(d2.log)
	if !strings.Contains(string(log), asides[0]) || !strings.Contains(string(log), "the state DB is corrupt") {
		t.Errorf("the daemon's log does not name %s:\n%s", asides[0], tail(string(log), 4000))
	}
}
