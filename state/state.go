// Package state is sipsentry's memory across restarts: one SQLite file
// (modernc.org/sqlite, pure Go, WAL) holding per-source aggregates, bans with
// their offence counts, learned push-server allows with their evidence, flags
// and a bounded event log.
//
// The daemon writes through Apply from a single writer goroutine, one
// transaction per batch, so an event flood costs one fsync per batch, not per
// event (synchronous=NORMAL in WAL); within it, source, ban and event rows
// go in multi-row statements of up to 128 rows, in key order
// (multirow.go). Readers (`sipsentry sources`, `status`)
// use OpenReadOnly and never block the writer.
//
// It never decides anything: what is written here was decided by the engine.
// It never stores a secret.
package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/activity"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// FileName is the database's name inside state_dir.
const FileName = "sipsentry.db"

// Source statuses as Sources reports them, strongest first.
const (
	StatusBanned      = "banned"       // an active ban in the kernel
	StatusWouldBan    = "would_ban"    // firewall.mode monitor: the engine would have banned it
	StatusAllowed     = "allowed"      // inside a static firewall.allow CIDR
	StatusLearnedPush = "learned_push" // a learned or seeded push server
	StatusFlagged     = "flagged"      // e.g. a foreign login that was not learned
	StatusNone        = "none"
)

// How a learned allow came to be.
const (
	HowUserAgent = "user_agent" // the contact's User-Agent matched push.user_agents
	HowPTR       = "ptr"        // forward-confirmed PTR in push.domains
	HowSeed      = "seed"       // push.hosts resolved by DNS
	HowStatic    = "static"     // firewall.allow in the config
	HowManual    = "manual"     // `sipsentry allow` by an operator
)

// Ban origins: who decided a ban.
const (
	OriginEngine = "engine" // the engine's thresholds, geo policy or injection rule
	OriginManual = "manual" // `sipsentry ban` by an operator
)

// NoUID is the UID of a record no operator made (engine bans, learned
// allows).
const NoUID = -1

// ErrReadOnly is returned by writes on a store opened with OpenReadOnly.
var ErrReadOnly = errors.New("state: store is read-only")

// Store is the open database. Safe for concurrent use; writes are meant to
// come from one goroutine.
type Store struct {
	db   *sql.DB
	path string
	ro   bool
	// Now is the clock used for "active" (unexpired) queries; tests replace it.
	Now func() time.Time

	writes  writeHealth // Apply's results, for WriteHealth (check.go)
	inserts insertStmts // the bulk tables' multi-row INSERTs (multirow.go)
}

const schema = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- One row per (address, in-memory session): the engine replaces its row on
-- each flush and starts a new session when an address comes back after
-- eviction, so no read-modify-write is needed; Sources merges the rows.
CREATE TABLE IF NOT EXISTS sources (
	addr TEXT NOT NULL,
	session INTEGER NOT NULL,
	first_seen INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	auth_ok INTEGER NOT NULL DEFAULT 0,
	auth_failed INTEGER NOT NULL DEFAULT 0,
	unknown_account INTEGER NOT NULL DEFAULT 0,
	acl INTEGER NOT NULL DEFAULT 0,
	other INTEGER NOT NULL DEFAULT 0,
	injection INTEGER NOT NULL DEFAULT 0,
	accounts TEXT NOT NULL DEFAULT '[]',
	distinct_accounts INTEGER NOT NULL DEFAULT 0,
	last_ua TEXT NOT NULL DEFAULT '',
	last_service TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (addr, session)
);
CREATE INDEX IF NOT EXISTS sources_last_seen ON sources(last_seen);
-- A ban row outlives its ban: offences drive escalation across restarts.
CREATE TABLE IF NOT EXISTS bans (
	addr TEXT PRIMARY KEY,
	until INTEGER NOT NULL,
	offences INTEGER NOT NULL,
	reason TEXT NOT NULL,
	created INTEGER NOT NULL,
	monitor INTEGER NOT NULL DEFAULT 0,
	origin TEXT NOT NULL DEFAULT 'engine',
	uid INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS allows (
	prefix TEXT PRIMARY KEY,
	until INTEGER NOT NULL,
	how TEXT NOT NULL,
	account TEXT NOT NULL DEFAULT '',
	user_agent TEXT NOT NULL DEFAULT '',
	uri TEXT NOT NULL DEFAULT '',
	aor TEXT NOT NULL DEFAULT '',
	ptr TEXT NOT NULL DEFAULT '',
	first_seen INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	comment TEXT NOT NULL DEFAULT '',
	uid INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS flags (
	addr TEXT NOT NULL,
	kind TEXT NOT NULL,
	note TEXT NOT NULL,
	first_seen INTEGER NOT NULL,
	last_seen INTEGER NOT NULL,
	count INTEGER NOT NULL,
	PRIMARY KEY (addr, kind)
);
CREATE TABLE IF NOT EXISTS events (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	time INTEGER NOT NULL,
	addr TEXT NOT NULL,
	type TEXT NOT NULL,
	kind TEXT NOT NULL,
	service TEXT NOT NULL,
	account TEXT NOT NULL,
	decision TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '1');
`

// schemaVersion is the layout migrate brings a database to. Version 2 adds
// who decided a ban (origin, uid) and who made an allow (comment, uid).
const schemaVersion = 2

// addedColumns are the columns each version added, for migrate to add to a
// database made by an older sipsentry (CREATE TABLE IF NOT EXISTS leaves an
// existing table as it was).
var addedColumns = []struct{ table, column, decl string }{
	{"bans", "origin", "TEXT NOT NULL DEFAULT 'engine'"},
	{"bans", "uid", "INTEGER NOT NULL DEFAULT -1"},
	{"allows", "comment", "TEXT NOT NULL DEFAULT ''"},
	{"allows", "uid", "INTEGER NOT NULL DEFAULT -1"},
}

// migrate upgrades an existing database in place, in one transaction: rows
// written before keep their values and get the new columns' defaults (an
// old ban is an engine ban, an old allow has no operator).
func migrate(db *sql.DB) error {
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, c := range addedColumns {
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM pragma_table_info(?) WHERE name = ?`, c.table, c.column).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			// Names come from the constant list above, never from input.
			if _, err := tx.Exec(`ALTER TABLE ` + c.table + ` ADD COLUMN ` + c.column + ` ` + c.decl); err != nil {
				return fmt.Errorf("adding %s.%s: %w", c.table, c.column, err)
			}
		}
	}
	if _, err := tx.Exec(`UPDATE meta SET value = ? WHERE key = 'schema' AND CAST(value AS INTEGER) < ?`, fmt.Sprint(schemaVersion), schemaVersion); err != nil {
		return err
	}
	return tx.Commit()
}

// Path returns the database path inside stateDir.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Open opens (creating if needed) the database for the daemon: WAL,
// synchronous=NORMAL, a busy timeout so a reader never makes a write fail.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("state: creating %s: %w (check state_dir)", filepath.Dir(path), err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	// 512 KiB of page cache per connection instead of SQLite's 2 MB: the
	// daemon's queries are key lookups and one walk over the bans at start,
	// and the C allocator underneath keeps what the cache once held.
	q.Add("_pragma", "cache_size(-512)")
	q.Add("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", path, err)
	}
	s := &Store{db: db, path: path, Now: time.Now}
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("state: initialising %s: %w (is it a sipsentry database?)", path, err)
	}
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("state: upgrading %s to schema %d: %w (restore a backup or move the file away)", path, schemaVersion, err)
	}
	if err := os.Chmod(path, 0o640); err != nil && !errors.Is(err, os.ErrNotExist) {
		db.Close()
		return nil, fmt.Errorf("state: %w", err)
	}
	return s, nil
}

// OpenReadOnly opens an existing database for reading while the daemon
// writes it (WAL lets readers and the writer proceed together).
func OpenReadOnly(path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("state: %s: %w (has `sipsentry run` ever run with this state_dir?)", path, err)
	}
	q := url.Values{}
	q.Add("mode", "ro")
	q.Add("_pragma", "busy_timeout(5000)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", path, err)
	}
	if err := db.Ping(); err != nil {
		db.Close()
		return nil, fmt.Errorf("state: opening %s read-only: %w", path, err)
	}
	return &Store{db: db, path: path, ro: true, Now: time.Now}, nil
}

// Close closes the database.
func (s *Store) Close() error {
	s.inserts.close()
	return s.db.Close()
}

// Path is the file the store was opened from.
func (s *Store) Path() string { return s.path }

// ---- records ----

// PushEvidence is why an address was learned (or, for a flag, what was seen).
type PushEvidence struct {
	How       string    `json:"how"` // HowUserAgent, HowPTR, HowSeed, HowStatic
	Account   string    `json:"account,omitempty"`
	UserAgent string    `json:"user_agent,omitempty"`
	URI       string    `json:"uri,omitempty"`
	AOR       string    `json:"aor,omitempty"`
	PTR       string    `json:"ptr,omitempty"` // forward-confirmed name, or the seed host name
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// SourceRecord is one source as `sipsentry sources` shows it.
type SourceRecord struct {
	activity.Source
	Status      string
	BannedUntil time.Time
	Offences    int
	Note        string
	Push        *PushEvidence
}

// SourceUpdate replaces the row of one in-memory session of a source.
type SourceUpdate struct {
	Session int64
	Source  activity.Source
}

// Ban is a ban row. Until in the past means the ban is over; the row stays
// so that Offences escalates the next ban.
type Ban struct {
	Addr     netip.Addr
	Until    time.Time
	Offences int
	Reason   string
	Created  time.Time
	// Monitor marks a decision taken in firewall monitor mode: recorded,
	// never put in the kernel.
	Monitor bool
	// Origin is who decided it (OriginEngine, OriginManual); "" is written
	// as OriginEngine.
	Origin string
	// UID is the operator's uid for a manual ban, NoUID otherwise.
	UID int
}

// Allow is a learned (or static, or seeded) allow entry with its evidence.
type Allow struct {
	Prefix netip.Prefix
	Until  time.Time // zero: permanent
	PushEvidence
	// Comment is the operator's note on a manual allow.
	Comment string
	// UID is the operator's uid for a manual allow, NoUID otherwise (0 is
	// written as NoUID unless How is HowManual).
	UID int
}

// Flag records something an admin should look at (a foreign login).
type Flag struct {
	Addr  netip.Addr
	Kind  string // e.g. "foreign_login"
	Note  string
	Time  time.Time
	Count int // filled by Flags; ignored by Apply (each Apply adds one)
}

// Event is one row of the event log.
type Event struct {
	Time     time.Time
	Addr     netip.Addr
	Type     string
	Kind     string
	Service  string
	Account  string
	Decision string
}

// Batch is everything one writer transaction applies.
type Batch struct {
	Sources []SourceUpdate
	Bans    []Ban
	Lifts   []netip.Addr // end a ban now (unban); the offence count stays
	Allows  []Allow
	Unallow []netip.Prefix
	Flags   []Flag
	Events  []Event
}

// Empty reports whether b holds nothing.
func (b *Batch) Empty() bool {
	return len(b.Sources)+len(b.Bans)+len(b.Lifts)+len(b.Allows)+len(b.Unallow)+len(b.Flags)+len(b.Events) == 0
}

func ns(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func tm(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Apply writes b in one transaction.
func (s *Store) Apply(ctx context.Context, b *Batch) (err error) {
	if s.ro {
		return ErrReadOnly
	}
	if b.Empty() {
		return nil
	}
	defer func() { s.writes.note(ctx, err) }()
	for _, t := range []struct {
		m    *multiInsert
		rows int
	}{{insertSources, len(b.Sources)}, {insertBans, len(b.Bans)}, {insertEvents, len(b.Events)}} {
		if t.rows > 0 {
			if err := s.inserts.prepare(ctx, s.db, t.m, t.rows); err != nil {
				return err
			}
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state: begin: %w", err)
	}
	defer tx.Rollback()
	// One argument slice for every statement of the batch, as long as its
	// largest needs (a flush at rest is a few rows).
	widest := min(max(len(b.Sources), len(b.Bans), len(b.Events)), rowsPerInsert) * insertSources.cols
	w := &rowWriter{ctx: ctx, tx: tx, stmts: &s.inserts, args: make([]any, 0, widest)}
	if err := applyTx(ctx, w, b, s.Now()); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	return nil
}

func applyTx(ctx context.Context, w *rowWriter, b *Batch, now time.Time) error {
	tx := w.tx
	sources := byKey(len(b.Sources), func(i int) (netip.Addr, int64) { return b.Sources[i].Source.Addr, b.Sources[i].Session })
	if err := w.insert(insertSources, len(sources), func(args []any, i int) []any {
		u := &b.Sources[sources[i].row]
		src := &u.Source
		w.json = appendAccountsJSON(w.json[:0], src.Accounts)
		c := &src.Counts
		return append(args, sources[i].addr, u.Session, ns(src.FirstSeen), ns(src.LastSeen),
			int64(c.AuthOK), int64(c.AuthFailed), int64(c.UnknownAccount), int64(c.ACL), int64(c.Other), int64(c.Injection),
			string(w.json), int64(src.DistinctAccounts), src.LastUserAgent, src.LastService)
	}, func(lo, hi int) string {
		return rowsNamed("sources", b.Sources[sources[lo].row].Source.Addr, b.Sources[sources[hi-1].row].Source.Addr, hi-lo)
	}); err != nil {
		return err
	}
	bans := byKey(len(b.Bans), func(i int) (netip.Addr, int64) { return b.Bans[i].Addr, 0 })
	if err := w.insert(insertBans, len(bans), func(args []any, i int) []any {
		bn := &b.Bans[bans[i].row]
		origin, uid := bn.Origin, bn.UID
		if origin == "" {
			origin = OriginEngine
		}
		if origin == OriginEngine {
			uid = NoUID
		}
		return append(args, bans[i].addr, ns(bn.Until), int64(bn.Offences), bn.Reason, ns(bn.Created), bn.Monitor, origin, int64(uid))
	}, func(lo, hi int) string {
		return rowsNamed("bans", b.Bans[bans[lo].row].Addr, b.Bans[bans[hi-1].row].Addr, hi-lo)
	}); err != nil {
		return err
	}
	for _, a := range b.Lifts {
		if _, err := tx.ExecContext(ctx, `UPDATE bans SET until=? WHERE addr=? AND until > ?`,
			now.UnixNano(), a.String(), now.UnixNano()); err != nil {
			return fmt.Errorf("state: lifting ban %s: %w", a, err)
		}
	}
	for _, al := range b.Allows {
		e := al.PushEvidence
		uid := al.UID
		if e.How != HowManual {
			uid = NoUID
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO allows (prefix, until, how, account, user_agent, uri, aor, ptr, first_seen, last_seen, comment, uid)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT(prefix) DO UPDATE SET until=excluded.until, how=excluded.how, comment=excluded.comment, uid=excluded.uid,
			account=CASE WHEN excluded.account<>'' THEN excluded.account ELSE allows.account END,
			user_agent=CASE WHEN excluded.user_agent<>'' THEN excluded.user_agent ELSE allows.user_agent END,
			uri=CASE WHEN excluded.uri<>'' THEN excluded.uri ELSE allows.uri END,
			aor=CASE WHEN excluded.aor<>'' THEN excluded.aor ELSE allows.aor END,
			ptr=CASE WHEN excluded.ptr<>'' THEN excluded.ptr ELSE allows.ptr END,
			first_seen=min(allows.first_seen, excluded.first_seen), last_seen=max(allows.last_seen, excluded.last_seen)`,
			al.Prefix.Masked().String(), ns(al.Until), e.How, e.Account, e.UserAgent, e.URI, e.AOR, e.PTR,
			ns(e.FirstSeen), ns(e.LastSeen), al.Comment, uid); err != nil {
			return fmt.Errorf("state: writing allow %s: %w", al.Prefix, err)
		}
	}
	for _, p := range b.Unallow {
		if _, err := tx.ExecContext(ctx, `DELETE FROM allows WHERE prefix=?`, p.Masked().String()); err != nil {
			return fmt.Errorf("state: removing allow %s: %w", p, err)
		}
	}
	for _, f := range b.Flags {
		if _, err := tx.ExecContext(ctx, `INSERT INTO flags (addr, kind, note, first_seen, last_seen, count) VALUES (?,?,?,?,?,1)
			ON CONFLICT(addr, kind) DO UPDATE SET note=excluded.note, last_seen=max(flags.last_seen, excluded.last_seen), count=flags.count+1`,
			f.Addr.String(), f.Kind, f.Note, ns(f.Time), ns(f.Time)); err != nil {
			return fmt.Errorf("state: writing flag %s: %w", f.Addr, err)
		}
	}
	return w.insert(insertEvents, len(b.Events), func(args []any, i int) []any {
		ev := &b.Events[i]
		return append(args, ns(ev.Time), ev.Addr.String(), ev.Type, ev.Kind, ev.Service, ev.Account, ev.Decision)
	}, func(lo, hi int) string {
		return rowsNamed("events", b.Events[lo].Addr, b.Events[hi-1].Addr, hi-lo)
	})
}

// rowsNamed names the rows of one failed multi-row INSERT for its error.
func rowsNamed(table string, first, last netip.Addr, n int) string {
	if n == 1 {
		return fmt.Sprintf("%s row %s", table, first)
	}
	return fmt.Sprintf("%d %s rows %s..%s", n, table, first, last)
}

// Prune deletes events older than before and keeps at most maxEvents rows
// (0: no count limit), and source sessions last seen before before that
// have no ban and no allow. It returns the events deleted.
func (s *Store) Prune(ctx context.Context, before time.Time, maxEvents int) (int64, error) {
	if s.ro {
		return 0, ErrReadOnly
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE time < ?`, ns(before))
	if err != nil {
		return 0, fmt.Errorf("state: pruning events: %w", err)
	}
	n, _ := res.RowsAffected()
	if maxEvents > 0 {
		res, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?`, maxEvents)
		if err != nil {
			return n, fmt.Errorf("state: pruning events: %w", err)
		}
		m, _ := res.RowsAffected()
		n += m
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sources WHERE last_seen < ?
		AND addr NOT IN (SELECT addr FROM bans) AND addr NOT IN (SELECT addr FROM flags)`, ns(before)); err != nil {
		return n, fmt.Errorf("state: pruning sources: %w", err)
	}
	return n, nil
}

// MaxSession is the highest source session number written, so a restarted
// engine numbers new sessions after it.
func (s *Store) MaxSession(ctx context.Context) (int64, error) {
	var n sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT max(session) FROM sources`).Scan(&n); err != nil {
		return 0, fmt.Errorf("state: %w", err)
	}
	return n.Int64, nil
}

// ---- reads ----

// Bans returns every ban row, active or not (offence history included).
func (s *Store) Bans(ctx context.Context) ([]Ban, error) {
	return s.bans(ctx, `SELECT addr, until, offences, reason, created, monitor, origin, uid FROM bans ORDER BY addr`)
}

// EachBan calls fn for every ban row whose until is at or after since,
// longest-running first, one row at a time: the daemon restores 100k bans
// at start without holding them all (as Bans would) beside their kernel
// entries. An error from fn stops the walk and is returned as is.
func (s *Store) EachBan(ctx context.Context, since time.Time, fn func(Ban) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT addr, until, offences, reason, created, monitor, origin, uid FROM bans WHERE until >= ? ORDER BY until DESC`, since.UnixNano())
	if err != nil {
		return fmt.Errorf("state: reading bans: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		b, ok, err := scanBan(rows)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if err := fn(b); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("state: reading bans: %w", err)
	}
	return nil
}

// scanBan reads one bans row; ok is false for an unparsable address.
func scanBan(rows *sql.Rows) (b Ban, ok bool, err error) {
	var addr string
	var until, created int64
	if err := rows.Scan(&addr, &until, &b.Offences, &b.Reason, &created, &b.Monitor, &b.Origin, &b.UID); err != nil {
		return Ban{}, false, fmt.Errorf("state: reading bans: %w", err)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return Ban{}, false, nil // not ours to fix here; never crash on one bad row
	}
	b.Addr, b.Until, b.Created = a, tm(until), tm(created)
	return b, true, nil
}

// ActiveBans returns bans whose until is in the future (Store.Now).
func (s *Store) ActiveBans(ctx context.Context) ([]Ban, error) {
	return s.bans(ctx, `SELECT addr, until, offences, reason, created, monitor, origin, uid FROM bans WHERE until > ? ORDER BY until`, s.Now().UnixNano())
}

func (s *Store) bans(ctx context.Context, q string, args ...any) ([]Ban, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("state: reading bans: %w", err)
	}
	defer rows.Close()
	var out []Ban
	for rows.Next() {
		b, ok, err := scanBan(rows)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, b)
		}
	}
	return out, rows.Err()
}

// LearnedAllows returns unexpired allow entries (permanent ones included).
func (s *Store) LearnedAllows(ctx context.Context) ([]Allow, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT prefix, until, how, account, user_agent, uri, aor, ptr, first_seen, last_seen, comment, uid
		FROM allows WHERE until = 0 OR until > ? ORDER BY prefix`, s.Now().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("state: reading allows: %w", err)
	}
	defer rows.Close()
	var out []Allow
	for rows.Next() {
		var a Allow
		var p string
		var until, first, last int64
		if err := rows.Scan(&p, &until, &a.How, &a.Account, &a.UserAgent, &a.URI, &a.AOR, &a.PTR, &first, &last, &a.Comment, &a.UID); err != nil {
			return nil, fmt.Errorf("state: reading allows: %w", err)
		}
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			continue
		}
		a.Prefix, a.Until, a.FirstSeen, a.LastSeen = pfx, tm(until), tm(first), tm(last)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Flags returns every flag.
func (s *Store) Flags(ctx context.Context) ([]Flag, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT addr, kind, note, last_seen, count FROM flags ORDER BY last_seen DESC`)
	if err != nil {
		return nil, fmt.Errorf("state: reading flags: %w", err)
	}
	defer rows.Close()
	var out []Flag
	for rows.Next() {
		var f Flag
		var addr string
		var last int64
		if err := rows.Scan(&addr, &f.Kind, &f.Note, &last, &f.Count); err != nil {
			return nil, fmt.Errorf("state: reading flags: %w", err)
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			continue
		}
		f.Addr, f.Time = a, tm(last)
		out = append(out, f)
	}
	return out, rows.Err()
}

// Events returns up to limit of the newest event-log rows, newest first.
func (s *Store) Events(ctx context.Context, limit int) ([]Event, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT time, addr, type, kind, service, account, decision FROM events ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("state: reading events: %w", err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var e Event
		var t int64
		var addr string
		if err := rows.Scan(&t, &addr, &e.Type, &e.Kind, &e.Service, &e.Account, &e.Decision); err != nil {
			return nil, fmt.Errorf("state: reading events: %w", err)
		}
		e.Time = tm(t)
		e.Addr, _ = netip.ParseAddr(addr)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Summary is the store at a glance.
type Summary struct {
	Sources       int
	Events        int
	ActiveBans    int
	WouldBans     int // active monitor-mode decisions
	BansEver      int
	LearnedAllows int
	Flags         int
	FirstEvent    time.Time
	LastEvent     time.Time
}

// Summary counts what the store holds.
func (s *Store) Summary(ctx context.Context) (Summary, error) {
	var sm Summary
	now := s.Now().UnixNano()
	var first, last sql.NullInt64
	err := s.db.QueryRowContext(ctx, `SELECT
		(SELECT count(DISTINCT addr) FROM sources),
		(SELECT count(*) FROM events),
		(SELECT count(*) FROM bans WHERE until > ? AND monitor = 0),
		(SELECT count(*) FROM bans WHERE until > ? AND monitor = 1),
		(SELECT count(*) FROM bans),
		(SELECT count(*) FROM allows WHERE until = 0 OR until > ?),
		(SELECT count(*) FROM flags),
		(SELECT min(time) FROM events),
		(SELECT max(time) FROM events)`, now, now, now).Scan(
		&sm.Sources, &sm.Events, &sm.ActiveBans, &sm.WouldBans, &sm.BansEver, &sm.LearnedAllows, &sm.Flags, &first, &last)
	if err != nil {
		return sm, fmt.Errorf("state: summary: %w", err)
	}
	sm.FirstEvent, sm.LastEvent = tm(first.Int64), tm(last.Int64)
	return sm, nil
}

// Sources returns one record per source address (sessions merged), with its
// status: banned > would_ban > allowed/learned_push > flagged > none.
// Addresses that only have an active ban, a learned allow or a flag row are
// included too (seeded push hosts only once they sent an event).
func (s *Store) Sources(ctx context.Context) ([]SourceRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT addr, first_seen, last_seen, auth_ok, auth_failed, unknown_account, acl, other, injection,
		accounts, distinct_accounts, last_ua, last_service FROM sources ORDER BY addr, session`)
	if err != nil {
		return nil, fmt.Errorf("state: reading sources: %w", err)
	}
	byAddr := map[netip.Addr]*SourceRecord{}
	var order []netip.Addr
	get := func(a netip.Addr) *SourceRecord {
		r := byAddr[a]
		if r == nil {
			r = &SourceRecord{Source: activity.Source{Addr: a}, Status: StatusNone}
			byAddr[a] = r
			order = append(order, a)
		}
		return r
	}
	for rows.Next() {
		var src activity.Source
		var addr, acc string
		var first, last int64
		c := &src.Counts
		if err := rows.Scan(&addr, &first, &last, &c.AuthOK, &c.AuthFailed, &c.UnknownAccount, &c.ACL, &c.Other, &c.Injection,
			&acc, &src.DistinctAccounts, &src.LastUserAgent, &src.LastService); err != nil {
			rows.Close()
			return nil, fmt.Errorf("state: reading sources: %w", err)
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			continue
		}
		src.Addr, src.FirstSeen, src.LastSeen = a, tm(first), tm(last)
		_ = json.Unmarshal([]byte(acc), &src.Accounts)
		r := get(a)
		r.Source = MergeSource(r.Source, src)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: reading sources: %w", err)
	}

	now := s.Now()
	bans, err := s.Bans(ctx)
	if err != nil {
		return nil, err
	}
	allows, err := s.LearnedAllows(ctx)
	if err != nil {
		return nil, err
	}
	flags, err := s.Flags(ctx)
	if err != nil {
		return nil, err
	}
	for _, f := range flags {
		r := get(f.Addr)
		r.Status = StatusFlagged
		r.Note = f.Note
	}
	// Allows: host entries attach to their address; wider (static) prefixes
	// mark every known source inside them.
	for _, al := range allows {
		al := al
		if al.Prefix.IsSingleIP() {
			if _, seen := byAddr[al.Prefix.Addr()]; !seen && al.How == HowSeed {
				continue // a seeded push host that never talked to us is no source
			}
			r := get(al.Prefix.Addr())
			setAllow(r, &al)
			continue
		}
		for _, a := range order {
			if al.Prefix.Contains(a) {
				setAllow(byAddr[a], &al)
			}
		}
	}
	for _, b := range bans {
		r, known := byAddr[b.Addr]
		if !known && !b.Until.After(now) {
			continue // old offence history of a source no longer kept
		}
		r = get(b.Addr)
		r.Offences = b.Offences
		if b.Until.After(now) {
			r.BannedUntil = b.Until
			r.Status = StatusBanned
			r.Note = b.Reason
			if b.Monitor {
				r.Status = StatusWouldBan
				r.Note = "would ban (monitor): " + b.Reason
			}
		}
	}
	out := make([]SourceRecord, 0, len(order))
	for _, a := range order {
		out = append(out, *byAddr[a])
	}
	slices.SortFunc(out, func(x, y SourceRecord) int { return x.Addr.Compare(y.Addr) })
	return out, nil
}

func setAllow(r *SourceRecord, al *Allow) {
	ev := al.PushEvidence
	if al.How == HowStatic {
		r.Status = StatusAllowed
		r.Note = "firewall.allow " + al.Prefix.String()
		return
	}
	if al.How == HowManual {
		r.Status = StatusAllowed
		r.Note = "manual allow " + al.Prefix.String()
		if al.Comment != "" {
			r.Note += ": " + al.Comment
		}
		return
	}
	r.Status = StatusLearnedPush
	r.Push = &ev
	var parts []string
	if ev.UserAgent != "" {
		parts = append(parts, "UA "+ev.UserAgent)
	}
	if ev.PTR != "" {
		parts = append(parts, "PTR "+ev.PTR)
	}
	r.Note = "push server (" + al.How + ")"
	if len(parts) > 0 {
		r.Note += ": " + strings.Join(parts, ", ")
	}
}

// MergeSource adds b's counts to a's (two sessions of one address): counts
// sum, first/last seen widen, accounts merge by name keeping the most tried
// activity.MaxAccounts, the distinct count is a lower bound (names beyond
// the kept ones cannot be compared across sessions).
func MergeSource(a, b activity.Source) activity.Source {
	if a.FirstSeen.IsZero() && a.LastSeen.IsZero() && a.Counts == (activity.Counts{}) && len(a.Accounts) == 0 {
		if a.Addr.IsValid() {
			b.Addr = a.Addr
		}
		return b
	}
	out := a
	if !b.FirstSeen.IsZero() && (out.FirstSeen.IsZero() || b.FirstSeen.Before(out.FirstSeen)) {
		out.FirstSeen = b.FirstSeen
	}
	if b.LastSeen.After(out.LastSeen) {
		out.LastSeen = b.LastSeen
		if b.LastUserAgent != "" {
			out.LastUserAgent = b.LastUserAgent
		}
		if b.LastService != "" {
			out.LastService = b.LastService
		}
	}
	if out.LastUserAgent == "" {
		out.LastUserAgent = b.LastUserAgent
	}
	if out.LastService == "" {
		out.LastService = b.LastService
	}
	c := &out.Counts
	c.AuthOK += b.Counts.AuthOK
	c.AuthFailed += b.Counts.AuthFailed
	c.UnknownAccount += b.Counts.UnknownAccount
	c.ACL += b.Counts.ACL
	c.Other += b.Counts.Other
	c.Injection += b.Counts.Injection
	accs := slices.Clone(a.Accounts)
	newNames := 0
	for _, x := range b.Accounts {
		i := slices.IndexFunc(accs, func(y activity.AccountCount) bool { return y.Account == x.Account })
		if i >= 0 {
			accs[i].Count += x.Count
		} else {
			accs = append(accs, x)
			newNames++
		}
	}
	slices.SortStableFunc(accs, func(x, y activity.AccountCount) int { return y.Count - x.Count })
	if len(accs) > activity.MaxAccounts {
		accs = accs[:activity.MaxAccounts]
	}
	out.Accounts = accs
	out.DistinctAccounts = max(a.DistinctAccounts+newNames, b.DistinctAccounts, len(accs))
	return out
}
