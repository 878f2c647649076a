package state

// Multi-row INSERTs for the writer's bulk tables (sources, bans, events).
//
// A ban burst is thousands of rows per transaction, and with one Exec per
// row most of the writer's CPU went to database/sql and the driver, not to
// SQLite: converting and boxing each argument, binding through the C ABI,
// a context watcher per Exec (issue 11: applyTx was 41.6 % of the daemon's
// CPU in the 100k-source flood, ~13 µs per row). One statement carrying
// rowsPerInsert rows pays the per-Exec part once per chunk.
//
// SQLite runs `INSERT ... VALUES (...),(...)` row after row, in order: an
// upsert's DO UPDATE sees what the rows before it wrote, so a later row of
// a key wins as it did with one Exec per row (TestMultiRowOrder).
//
// A multi-row statement that may abort half-way gets a statement journal:
// SQLite first copies each page it touches, to undo that statement alone,
// and past 64 KiB the copy goes to a temp file (13 % of
// BenchmarkApplyEventRows' CPU). The writer never keeps half a
// transaction — any error rolls the whole batch back — so the events insert
// says OR FAIL, which needs no undo. An upsert's DO UPDATE may abort
// whatever it is told, so sources and bans keep their journal: splitting
// sources' REPLACE into a DELETE and an INSERT OR FAIL cost as much as the
// journal it saved (measured, not kept).

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// rowsPerInsert is the most rows one INSERT carries. Past a few dozen rows
// the per-Exec part is noise next to SQLite's own work: 32, 64, 128, 256
// and 512 rows measured within the noise of each other (the Apply
// benchmarks, interleaved). 128 keeps the widest table's statement
// (sources, 14 columns) at 1,792 parameters, far under
// SQLITE_MAX_VARIABLE_NUMBER (32,766 in modernc.org/sqlite's build; 999 in
// SQLite builds before 3.32 would be exceeded, so check before porting);
// multi-row VALUES are not bound by SQLITE_MAX_COMPOUND_SELECT since SQLite
// 3.8.8. A power of two, so that a batch's tail is written with the cached
// statements for 64, 32, …, 1 rows (at most 7 more Execs) instead of
// preparing a statement of the tail's exact size in every flush: the daemon
// flushes every 100 ms, and most flushes are a tail.
const rowsPerInsert = 1 << maxInsertExp

const (
	maxInsertExp = 7                // rowsPerInsert = 2^7
	insertSizes  = maxInsertExp + 1 // statements per table: 1, 2, 4, …, rowsPerInsert rows
)

// multiInsert is one table's INSERT, written out for any number of rows.
type multiInsert struct {
	table  string // for errors
	prefix string // up to and including VALUES
	cols   int    // placeholders per row
	suffix string // what follows the rows (an ON CONFLICT clause), or ""
}

// query is the statement for rows rows.
func (m *multiInsert) query(rows int) string {
	tuple := "(" + strings.Repeat("?,", m.cols-1) + "?)"
	var q strings.Builder
	q.Grow(len(m.prefix) + rows*(len(tuple)+1) + len(m.suffix))
	q.WriteString(m.prefix)
	for i := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString(tuple)
	}
	q.WriteString(m.suffix)
	return q.String()
}

// The columns are those of the one-row statements the writer used before,
// and the rows written are the same (TestMultiRowMatchesOneByOne compares
// every column with that writer's). Two clauses changed, neither in what a
// batch leaves behind:
//   - sources' INSERT OR REPLACE became an upsert setting every column: the
//     same row, updated in place instead of deleted and inserted again
//     with a new rowid and new entries in both indexes (0.75–0.89x the CPU
//     a row in BenchmarkApplySources/Random, where every row is an update,
//     as most are in a flood). Nothing reads sources by rowid.
//   - events' OR FAIL differs from the plain INSERT only in leaving a
//     failed statement's earlier rows in a transaction that is then rolled
//     back.
var (
	insertSources = &multiInsert{
		table: "sources",
		prefix: `INSERT INTO sources
			(addr, session, first_seen, last_seen, auth_ok, auth_failed, unknown_account, acl, other, injection,
			 accounts, distinct_accounts, last_ua, last_service) VALUES `,
		cols: 14,
		suffix: `
			ON CONFLICT(addr, session) DO UPDATE SET first_seen=excluded.first_seen, last_seen=excluded.last_seen,
			auth_ok=excluded.auth_ok, auth_failed=excluded.auth_failed, unknown_account=excluded.unknown_account, acl=excluded.acl,
			other=excluded.other, injection=excluded.injection, accounts=excluded.accounts, distinct_accounts=excluded.distinct_accounts,
			last_ua=excluded.last_ua, last_service=excluded.last_service`,
	}
	insertBans = &multiInsert{
		table:  "bans",
		prefix: `INSERT INTO bans (addr, until, offences, reason, created, monitor, origin, uid) VALUES `,
		cols:   8,
		suffix: `
			ON CONFLICT(addr) DO UPDATE SET until=excluded.until, offences=max(bans.offences, excluded.offences),
			reason=excluded.reason, created=excluded.created, monitor=excluded.monitor, origin=excluded.origin, uid=excluded.uid`,
	}
	insertEvents = &multiInsert{
		table:  "events",
		prefix: `INSERT OR FAIL INTO events (time, addr, type, kind, service, account, decision) VALUES `,
		cols:   7,
	}
)

// insertStmts keeps each table's statements prepared on the database for
// the store's life. database/sql prepares a statement again on each pooled
// connection it meets, once, and Tx.StmtContext reuses it on the
// transaction's connection; the modernc driver keeps the compiled SQLite
// statement and only resets it between Execs.
//
// A size is prepared the first time a batch needs it: all eight sizes of
// the three tables hold ~800 KiB of SQLite memory per connection (a
// 128-row statement ~110 bytes a parameter), which a daemon that never
// saw more than a few rows a flush does not need to carry.
type insertStmts struct {
	mu     sync.Mutex // guards byKind
	byKind map[*multiInsert]*[insertSizes]*sql.Stmt
}

// chunkExp is the size, as a power of two, of the next statement when left
// rows remain: full chunks first, then the tail's binary digits, largest
// first.
func chunkExp(left int) int { return min(bits.Len(uint(left)), insertSizes) - 1 }

// prepare makes sure the statements writing n rows of m exist. Apply calls
// it before it begins its transaction: prepared inside, they would need a
// second connection while the transaction holds the first.
func (c *insertStmts) prepare(ctx context.Context, db *sql.DB, m *multiInsert, n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	sts := c.byKind[m]
	if sts == nil {
		sts = new([insertSizes]*sql.Stmt)
		if c.byKind == nil {
			c.byKind = map[*multiInsert]*[insertSizes]*sql.Stmt{}
		}
		c.byKind[m] = sts
	}
	for left := n; left > 0; {
		exp := chunkExp(left)
		if sts[exp] == nil {
			st, err := db.PrepareContext(ctx, m.query(1<<exp))
			if err != nil {
				return fmt.Errorf("state: preparing the %s insert: %w", m.table, err)
			}
			sts[exp] = st
		}
		left -= 1 << exp
		if exp == maxInsertExp {
			left %= rowsPerInsert // the other full chunks use the same statement
		}
	}
	return nil
}

// get returns m's statement for 1<<exp rows, or nil if prepare did not make
// it.
func (c *insertStmts) get(m *multiInsert, exp int) *sql.Stmt {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sts := c.byKind[m]; sts != nil {
		return sts[exp]
	}
	return nil
}

// close closes every statement (Store.Close, before the database).
func (c *insertStmts) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, sts := range c.byKind {
		for _, st := range sts {
			if st != nil {
				st.Close()
			}
		}
	}
	c.byKind = nil
}

// rowWriter writes one batch's rows of the bulk tables inside tx, reusing
// one argument slice for every chunk.
type rowWriter struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts *insertStmts
	args  []any
	json  []byte // one row's accounts column, reused
}

// insert writes n rows of m, in order: put appends row i's values (m.cols
// of them, int64/string/bool: the types database/sql passes through
// without reflection) to args. what names rows lo..hi-1 in an error.
func (w *rowWriter) insert(m *multiInsert, n int, put func(args []any, i int) []any, what func(lo, hi int) string) error {
	var txStmts [insertSizes]*sql.Stmt // by size exponent; closed with the transaction
	for lo := 0; lo < n; {
		exp := chunkExp(n - lo)
		rows := 1 << exp
		st := txStmts[exp]
		if st == nil {
			if parent := w.stmts.get(m, exp); parent != nil {
				st = w.tx.StmtContext(w.ctx, parent)
			} else {
				var err error
				if st, err = w.tx.PrepareContext(w.ctx, m.query(rows)); err != nil {
					return fmt.Errorf("state: preparing the %s insert: %w", m.table, err)
				}
			}
			txStmts[exp] = st
		}
		w.args = w.args[:0]
		for i := lo; i < lo+rows; i++ {
			w.args = put(w.args, i)
		}
		if _, err := st.ExecContext(w.ctx, w.args...); err != nil {
			return fmt.Errorf("state: writing %s: %w", what(lo, lo+rows), err)
		}
		lo += rows
	}
	return nil
}

// rowKey is a row's unique key as the table's index orders it (addr's
// text, byte by byte, then the sources' session), and where the row is in
// the batch.
type rowKey struct {
	addr    string
	session int64
	row     int
}

// byKey is the order to write a batch's n rows in: by key, and in the
// batch's order among rows of one key, so that the last still replaces the
// others (sources) and the upsert meets them in the same order (bans). In
// key order the index pages a batch touches are each visited once, instead
// of once per row in a random order: an attack's addresses come in no
// order, and random order cost 2–2.5x the CPU a row
// (BenchmarkApplySourcesRandom, BenchmarkApplyBansRandom). Only rowids
// differ from writing in the batch's order; nothing reads these tables by
// rowid, and every query that orders them names its columns.
func byKey(n int, key func(i int) (netip.Addr, int64)) []rowKey {
	keys := make([]rowKey, n)
	for i := range keys {
		a, session := key(i)
		keys[i] = rowKey{a.String(), session, i}
	}
	slices.SortFunc(keys, func(a, b rowKey) int {
		if c := strings.Compare(a.addr, b.addr); c != 0 {
			return c
		}
		if c := cmp.Compare(a.session, b.session); c != 0 {
			return c
		}
		return cmp.Compare(a.row, b.row)
	})
	return keys
}
