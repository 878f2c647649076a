package state

// Checking the database before it is trusted, and starting over from the
// kernel when it is corrupt (issue 10: garbage in the bans pages was found
// only after the firewall was up, with no path and no fix — a crash loop —
// and garbage elsewhere ran silently on a file failing integrity_check).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
)

// ErrCorrupt means the database file failed SQLite's quick_check or is not
// a database at all. Nothing in it should be trusted.
var ErrCorrupt = errors.New("state: database is corrupt")

// HowKernel marks an allow read back from the kernel's allow set when the
// database that held its evidence was corrupt.
const HowKernel = "kernel"

// SQLite's primary result codes for a damaged file.
const (
	sqliteCorrupt = 11 // SQLITE_CORRUPT
	sqliteNotADB  = 26 // SQLITE_NOTADB
)

// Check runs PRAGMA quick_check (every page and b-tree, without the index
// cross-checks of integrity_check: O(N) instead of O(N log N)) on the file at
// path, read-only. A missing file is no error: the first start creates it.
// A damaged file gives an error wrapping ErrCorrupt with SQLite's first
// findings; other errors (permissions, I/O) are returned as they are.
func Check(ctx context.Context, path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("state: opening %s: %w", path, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(20)")
	if err != nil {
		return checkErr(path, err)
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return checkErr(path, err)
		}
		if line != "ok" {
			found = append(found, line)
		}
	}
	if err := rows.Err(); err != nil {
		return checkErr(path, err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s fails quick_check: %s", ErrCorrupt, path, strings.Join(found, "; "))
	}
	return nil
}

func checkErr(path string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		if c := se.Code() & 0xff; c == sqliteCorrupt || c == sqliteNotADB {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, path, err)
		}
	}
	return fmt.Errorf("state: checking %s: %w", path, err)
}

// MoveAside renames the database at path, with its -wal and -shm files, to
// <path>.corrupt-<UTC time> (and -wal/-shm beside it) so it can be examined
// and nothing reads it again. It returns the new name of the database.
func MoveAside(path string, now time.Time) (string, error) {
	aside := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("state: moving the corrupt %s aside: %w", path, err)
	}
	for _, ext := range []string{"-wal", "-shm"} {
		if err := os.Rename(path+ext, aside+ext); err != nil && !errors.Is(err, os.ErrNotExist) {
			return aside, fmt.Errorf("state: moving %s aside: %w", path+ext, err)
		}
	}
	return aside, nil
}

// KernelEntry is one member of a kernel set read back for AdoptKernel: its
// prefix and remaining timeout (0: permanent).
type KernelEntry struct {
	Prefix  netip.Prefix
	Timeout time.Duration
}

// AdoptKernel records the kernel's bans and timed allows as the truth in a
// fresh database (after a corrupt one was moved aside), so that the engine
// restores them at start as it restores any stored ban: each ban with its
// remaining time and offence 1 (the history went with the corrupt file), each
// timed single-address allow as learned with HowKernel. Permanent allows are
// left out: the static ones come from the config at every start.
func (s *Store) AdoptKernel(ctx context.Context, bans, allows []KernelEntry) (nBans, nAllows int, err error) {
	now := s.Now()
	var b Batch
	for _, e := range bans {
		if e.Timeout <= 0 || !e.Prefix.IsSingleIP() {
			continue
		}
		b.Bans = append(b.Bans, Ban{Addr: e.Prefix.Addr(), Until: now.Add(e.Timeout), Offences: 1,
			Reason: "kept from the kernel: the state DB was corrupt", Created: now})
	}
	for _, e := range allows {
		if e.Timeout <= 0 || !e.Prefix.IsSingleIP() {
			continue
		}
		b.Allows = append(b.Allows, Allow{Prefix: e.Prefix, Until: now.Add(e.Timeout),
			PushEvidence: PushEvidence{How: HowKernel, FirstSeen: now, LastSeen: now}})
	}
	if err := s.Apply(ctx, &b); err != nil {
		return 0, 0, err
	}
	return len(b.Bans), len(b.Allows), nil
}

// writeHealth remembers whether the last writes failed (a full disk, a
// read-only file system) so that health checks can say so.
type writeHealth struct {
	mu           sync.Mutex // guards the fields below
	failingSince time.Time  // zero while the last write succeeded
	lastErr      error
	failures     uint64
}

func (w *writeHealth) note(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		return // cancelled at shutdown: not the database's fault
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		w.failingSince, w.lastErr = time.Time{}, nil
		return
	}
	if w.failingSince.IsZero() {
		w.failingSince = time.Now()
	}
	w.lastErr = err
	w.failures++
}

// WriteHealth reports whether writes are failing: since when (zero: the
// last write succeeded), the last error, and the failed writes in total.
func (s *Store) WriteHealth() (failingSince time.Time, lastErr error, failures uint64) {
	s.writes.mu.Lock()
	defer s.writes.mu.Unlock()
	return s.writes.failingSince, s.writes.lastErr, s.writes.failures
}
