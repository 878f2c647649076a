package state

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/activity"

	"modernc.org/sqlite"
)

// multiRowSizes are the batch sizes around the chunk's edges.
var multiRowSizes = []int{0, 1, rowsPerInsert - 1, rowsPerInsert, rowsPerInsert + 1, 3*rowsPerInsert + 7}

// awkward are values a hostile peer can put in a row (they reach the
// database only as bound parameters).
var awkward = []string{"", "1001", `"quoted"`, `back\slash`, "it's", "tab\tnew\nline\x00nul", "\xff\xfe not utf-8",
	"<script>&amp;</script>", "line\u2028sep\u2029", "日本語", "'); DROP TABLE bans; --"}

func testSource(i int) SourceUpdate {
	s := activity.Source{
		Addr:          netip.AddrFrom4([4]byte{203, 0, byte(113 + i>>8), byte(i)}),
		FirstSeen:     t0.Add(-time.Duration(i) * time.Second),
		LastSeen:      t0.Add(time.Duration(i) * time.Millisecond),
		LastUserAgent: awkward[i%len(awkward)],
		LastService:   awkward[(i+3)%len(awkward)],
	}
	if i%5 == 0 {
		s.FirstSeen = time.Time{} // written as 0, read back as zero
	}
	s.Counts = activity.Counts{AuthOK: i, AuthFailed: 2 * i, UnknownAccount: i % 7, ACL: i % 3, Other: 1 << 40, Injection: i % 2}
	for j := range i % (activity.MaxAccounts + 2) {
		s.Accounts = append(s.Accounts, activity.AccountCount{Account: awkward[(i+j)%len(awkward)] + fmt.Sprint(j), Count: j + 1})
	}
	s.DistinctAccounts = len(s.Accounts) + i%3
	return SourceUpdate{Session: int64(1000 + i), Source: s}
}

func testBan(i int) Ban {
	b := Ban{
		Addr:     netip.AddrFrom4([4]byte{198, 51, byte(100 + i>>8), byte(i)}),
		Until:    t0.Add(time.Duration(i+1) * time.Minute),
		Offences: 1 + i%4,
		Reason:   awkward[i%len(awkward)],
		Created:  t0.Add(-time.Duration(i) * time.Nanosecond),
		Monitor:  i%3 == 0,
		UID:      1000 + i,
	}
	switch i % 3 {
	case 0: // "" is an engine ban, its uid is not kept
	case 1:
		b.Origin = OriginManual
	case 2:
		b.Origin = OriginEngine
	}
	if i%4 == 0 {
		b.Addr = netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i))
	}
	return b
}

func testEvent(i int) Event {
	return Event{
		Time:     t0.Add(time.Duration(i) * time.Microsecond),
		Addr:     netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}),
		Type:     awkward[i%len(awkward)],
		Kind:     awkward[(i+1)%len(awkward)],
		Service:  "PJSIP",
		Account:  awkward[(i+2)%len(awkward)],
		Decision: awkward[(i+4)%len(awkward)],
	}
}

// sourceRow is one raw row of the sources table.
type sourceRow struct {
	Addr                                                   string
	Session, FirstSeen, LastSeen                           int64
	AuthOK, AuthFailed, UnknownAccount, ACL, Other, Inject int64
	Accounts                                               string
	Distinct                                               int64
	LastUA, LastService                                    string
}

func wantSourceRow(u SourceUpdate) sourceRow {
	s := u.Source
	acc, _ := json.Marshal(nonNil(s.Accounts))
	c := s.Counts
	return sourceRow{s.Addr.String(), u.Session, ns(s.FirstSeen), ns(s.LastSeen),
		int64(c.AuthOK), int64(c.AuthFailed), int64(c.UnknownAccount), int64(c.ACL), int64(c.Other), int64(c.Injection),
		string(acc), int64(s.DistinctAccounts), s.LastUserAgent, s.LastService}
}

func readSourceRows(t *testing.T, db *sql.DB) []sourceRow {
	t.Helper()
	rows, err := db.Query(`SELECT addr, session, first_seen, last_seen, auth_ok, auth_failed, unknown_account, acl, other, injection,
		accounts, distinct_accounts, last_ua, last_service FROM sources ORDER BY addr, session`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []sourceRow
	for rows.Next() {
		var r sourceRow
		if err := rows.Scan(&r.Addr, &r.Session, &r.FirstSeen, &r.LastSeen, &r.AuthOK, &r.AuthFailed, &r.UnknownAccount, &r.ACL,
			&r.Other, &r.Inject, &r.Accounts, &r.Distinct, &r.LastUA, &r.LastService); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// eventRow is one raw row of the event log, its id included.
type eventRow struct {
	ID, Time                                     int64
	Addr, Type, Kind, Service, Account, Decision string
}

func readEventRows(t *testing.T, db *sql.DB) []eventRow {
	t.Helper()
	rows, err := db.Query(`SELECT id, time, addr, type, kind, service, account, decision FROM events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []eventRow
	for rows.Next() {
		var r eventRow
		if err := rows.Scan(&r.ID, &r.Time, &r.Addr, &r.Type, &r.Kind, &r.Service, &r.Account, &r.Decision); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTime(a, b time.Time) bool { return a.Equal(b) || (a.IsZero() && b.IsZero()) }

// Each bulk table, at every batch size around the chunk's edges, reads back
// field by field as written, in order.
func TestMultiRowSizes(t *testing.T) {
	ctx := context.Background()
	for _, n := range multiRowSizes {
		t.Run(fmt.Sprint("sources/", n), func(t *testing.T) {
			s, _ := open(t)
			b := &Batch{Flags: []Flag{{Addr: addr("203.0.113.250"), Kind: "k", Note: "n", Time: t0}}} // never empty
			for i := range n {
				b.Sources = append(b.Sources, testSource(i))
			}
			if err := s.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
			got := readSourceRows(t, s.db)
			if len(got) != n {
				t.Fatalf("%d rows, want %d", len(got), n)
			}
			want := make([]sourceRow, n)
			for i, u := range b.Sources {
				want[i] = wantSourceRow(u)
			}
			slices.SortFunc(want, func(a, b sourceRow) int {
				return cmp.Or(strings.Compare(a.Addr, b.Addr), cmp.Compare(a.Session, b.Session))
			})
			for i, r := range got {
				if r != want[i] {
					t.Errorf("row %d:\n got %+v\nwant %+v", i, r, want[i])
				}
			}
			// And through the reader: accounts decode to what was written.
			recs, err := s.Sources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			byAddr := map[netip.Addr]SourceRecord{}
			for _, r := range recs {
				byAddr[r.Addr] = r
			}
			for _, u := range b.Sources {
				r := byAddr[u.Source.Addr]
				// JSON keeps names as UTF-8: an invalid byte reads back as
				// U+FFFD, as it always did.
				var wantAcc []activity.AccountCount
				j, _ := json.Marshal(nonNil(u.Source.Accounts))
				_ = json.Unmarshal(j, &wantAcc)
				if !reflect.DeepEqual(nonNil(r.Accounts), wantAcc) {
					t.Errorf("%s: accounts %+v, want %+v", u.Source.Addr, r.Accounts, wantAcc)
				}
				if r.Counts != u.Source.Counts || r.DistinctAccounts != u.Source.DistinctAccounts || !sameTime(r.FirstSeen, u.Source.FirstSeen) ||
					!sameTime(r.LastSeen, u.Source.LastSeen) || r.LastUserAgent != u.Source.LastUserAgent || r.LastService != u.Source.LastService {
					t.Errorf("%s: read back %+v, wrote %+v", u.Source.Addr, r.Source, u.Source)
				}
			}
		})
		t.Run(fmt.Sprint("bans/", n), func(t *testing.T) {
			s, _ := open(t)
			b := &Batch{Flags: []Flag{{Addr: addr("203.0.113.250"), Kind: "k", Note: "n", Time: t0}}}
			for i := range n {
				b.Bans = append(b.Bans, testBan(i))
			}
			if err := s.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
			got, err := s.Bans(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("%d bans, want %d", len(got), n)
			}
			byAddr := map[netip.Addr]Ban{}
			for _, g := range got {
				byAddr[g.Addr] = g
			}
			for _, w := range b.Bans {
				if w.Origin == "" {
					w.Origin = OriginEngine
				}
				if w.Origin == OriginEngine {
					w.UID = NoUID
				}
				g, ok := byAddr[w.Addr]
				if !ok || !g.Until.Equal(w.Until) || !g.Created.Equal(w.Created) || g.Offences != w.Offences || g.Reason != w.Reason ||
					g.Monitor != w.Monitor || g.Origin != w.Origin || g.UID != w.UID {
					t.Errorf("ban %s: read back %+v, want %+v", w.Addr, g, w)
				}
			}
		})
		t.Run(fmt.Sprint("events/", n), func(t *testing.T) {
			s, _ := open(t)
			b := &Batch{Flags: []Flag{{Addr: addr("203.0.113.250"), Kind: "k", Note: "n", Time: t0}}}
			for i := range n {
				b.Events = append(b.Events, testEvent(i))
			}
			if err := s.Apply(ctx, b); err != nil {
				t.Fatal(err)
			}
			got := readEventRows(t, s.db)
			if len(got) != n {
				t.Fatalf("%d events, want %d", len(got), n)
			}
			for i, r := range got {
				e := b.Events[i]
				want := eventRow{int64(i + 1), ns(e.Time), e.Addr.String(), e.Type, e.Kind, e.Service, e.Account, e.Decision}
				if r != want {
					t.Errorf("event %d (ids follow the batch's order):\n got %+v\nwant %+v", i, r, want)
				}
			}
			evs, err := s.Events(ctx, n+1)
			if err != nil || len(evs) != n {
				t.Fatalf("Events: %d %v", len(evs), err)
			}
			for i, e := range evs {
				if w := b.Events[n-1-i]; !e.Time.Equal(w.Time) || e != (Event{Time: e.Time, Addr: w.Addr, Type: w.Type, Kind: w.Kind, Service: w.Service, Account: w.Account, Decision: w.Decision}) {
					t.Errorf("Events()[%d] %+v, want %+v", i, e, w)
				}
			}
		})
	}
}

// One batch holding two rows for one ban address and two for one source
// (addr, session), in one chunk and across chunks: rows apply one after the
// other, in the batch's order, as they did with one Exec per row.
func TestMultiRowOrder(t *testing.T) {
	ctx := context.Background()
	for _, gap := range []int{1, rowsPerInsert + 5, 2*rowsPerInsert + 1} {
		t.Run(fmt.Sprint("gap ", gap), func(t *testing.T) {
			s, _ := open(t)
			// An existing ban with more offences than either new row.
			old := Ban{Addr: addr("198.51.100.7"), Until: t0.Add(-time.Hour), Offences: 4, Reason: "old", Created: t0.Add(-2 * time.Hour)}
			if err := s.Apply(ctx, &Batch{Bans: []Ban{old}}); err != nil {
				t.Fatal(err)
			}
			bans := make([]Ban, gap+1)
			srcs := make([]SourceUpdate, gap+1)
			for i := range bans {
				bans[i] = testBan(i + 10)
				srcs[i] = testSource(i + 10)
			}
			// Ban address A: first row offences 7, later row offences 3
			// (max keeps 7; everything else from the later row). Address B:
			// the existing row's 4 against 2 then 6.
			a := addr("198.51.100.200")
			bans[0] = Ban{Addr: a, Until: t0.Add(time.Hour), Offences: 7, Reason: "first", Created: t0, Monitor: true}
			bans[gap] = Ban{Addr: a, Until: t0.Add(2 * time.Hour), Offences: 3, Reason: "second", Created: t0.Add(time.Second), Origin: OriginManual, UID: 42}
			bans = append(bans,
				Ban{Addr: old.Addr, Until: t0.Add(time.Hour), Offences: 2, Reason: "b1", Created: t0},
				Ban{Addr: old.Addr, Until: t0.Add(3 * time.Hour), Offences: 6, Reason: "b2", Created: t0})
			// Source (addr, session): the later row wins, whole.
			first, second := testSource(3), testSource(4)
			second.Source.Addr, second.Session = first.Source.Addr, first.Session
			srcs[0], srcs[gap] = first, second
			if err := s.Apply(ctx, &Batch{Bans: bans, Sources: srcs}); err != nil {
				t.Fatal(err)
			}
			all, err := s.Bans(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var gotA, gotB Ban
			for _, b := range all {
				switch b.Addr {
				case a:
					gotA = b
				case old.Addr:
					gotB = b
				}
			}
			if gotA.Offences != 7 || gotA.Reason != "second" || !gotA.Until.Equal(t0.Add(2*time.Hour)) || gotA.Monitor ||
				gotA.Origin != OriginManual || gotA.UID != 42 || !gotA.Created.Equal(t0.Add(time.Second)) {
				t.Errorf("ban with two rows: %+v, want offences 7 (max) and the rest from the later row", gotA)
			}
			if gotB.Offences != 6 || gotB.Reason != "b2" || !gotB.Until.Equal(t0.Add(3*time.Hour)) {
				t.Errorf("existing ban, two rows: %+v, want offences 6, reason b2", gotB)
			}
			rows := readSourceRows(t, s.db)
			if len(rows) != gap { // gap+1 rows, two of them one key
				t.Fatalf("%d source rows, want %d", len(rows), gap)
			}
			var n int
			for _, r := range rows {
				if r.Addr == first.Source.Addr.String() && r.Session == first.Session {
					n++
					if r != wantSourceRow(second) {
						t.Errorf("source with two rows:\n got %+v\nwant the later %+v", r, wantSourceRow(second))
					}
				}
			}
			if n != 1 {
				t.Errorf("%d rows for one (addr, session)", n)
			}
		})
	}
}

// applyOneByOne is the writer as it was before multi-row statements: one
// Exec per row, the statements copied from that version. The reference for
// TestMultiRowMatchesOneByOne.
func applyOneByOne(t *testing.T, db *sql.DB, b *Batch) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, u := range b.Sources {
		src := &u.Source
		acc, _ := json.Marshal(nonNil(src.Accounts))
		c := src.Counts
		if _, err := tx.Exec(`INSERT OR REPLACE INTO sources
			(addr, session, first_seen, last_seen, auth_ok, auth_failed, unknown_account, acl, other, injection,
			 accounts, distinct_accounts, last_ua, last_service) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			src.Addr.String(), u.Session, ns(src.FirstSeen), ns(src.LastSeen),
			c.AuthOK, c.AuthFailed, c.UnknownAccount, c.ACL, c.Other, c.Injection,
			string(acc), src.DistinctAccounts, src.LastUserAgent, src.LastService); err != nil {
			t.Fatal(err)
		}
	}
	for _, bn := range b.Bans {
		origin, uid := bn.Origin, bn.UID
		if origin == "" {
			origin = OriginEngine
		}
		if origin == OriginEngine {
			uid = NoUID
		}
		if _, err := tx.Exec(`INSERT INTO bans (addr, until, offences, reason, created, monitor, origin, uid) VALUES (?,?,?,?,?,?,?,?)
			ON CONFLICT(addr) DO UPDATE SET until=excluded.until, offences=max(bans.offences, excluded.offences),
			reason=excluded.reason, created=excluded.created, monitor=excluded.monitor, origin=excluded.origin, uid=excluded.uid`,
			bn.Addr.String(), ns(bn.Until), bn.Offences, bn.Reason, ns(bn.Created), bn.Monitor, origin, uid); err != nil {
			t.Fatal(err)
		}
	}
	for _, ev := range b.Events {
		if _, err := tx.Exec(`INSERT INTO events (time, addr, type, kind, service, account, decision) VALUES (?,?,?,?,?,?,?)`,
			ns(ev.Time), ev.Addr.String(), ev.Type, ev.Kind, ev.Service, ev.Account, ev.Decision); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// dumpTables is every row of the bulk tables as text: events with their
// ids; sources and bans in key order (they are written in key order, and
// nothing reads them by rowid).
func dumpTables(t *testing.T, db *sql.DB) string {
	t.Helper()
	var out strings.Builder
	for _, q := range []string{
		`SELECT * FROM sources ORDER BY addr, session`,
		`SELECT * FROM bans ORDER BY addr`,
		`SELECT * FROM events ORDER BY id`,
		`SELECT * FROM sqlite_sequence ORDER BY name`,
	} {
		rows, err := db.Query(q)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		fmt.Fprintln(&out, q)
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for _, v := range vals {
				switch v := v.(type) {
				case []byte:
					fmt.Fprintf(&out, "%q ", v)
				case string:
					fmt.Fprintf(&out, "%q ", v)
				default:
					fmt.Fprintf(&out, "%v ", v)
				}
			}
			fmt.Fprintln(&out)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	return out.String()
}

// Batches with repeated keys (in one chunk, across chunks, against rows
// written before), at sizes around the chunk's edges, leave the database
// exactly as the one-Exec-per-row writer did: every column, event ids
// included.
func TestMultiRowMatchesOneByOne(t *testing.T) {
	ctx := context.Background()
	multi, _ := open(t)
	single, _ := open(t)
	for round, n := range append(multiRowSizes, 2*rowsPerInsert+3, 5) {
		b := &Batch{Flags: []Flag{{Addr: addr("203.0.113.250"), Kind: "k", Note: "n", Time: t0}}}
		for i := range n {
			// Keys repeat every 61 rows and across rounds; values differ.
			k := (i*7 + round) % 61
			u := testSource(k)
			u.Source.Counts.AuthOK = i + 100*round
			u.Source.LastUserAgent = awkward[(i+round)%len(awkward)]
			b.Sources = append(b.Sources, u)
			bn := testBan(k)
			bn.Offences = (i*13 + round) % 9
			bn.Reason = fmt.Sprintf("round %d row %d", round, i)
			bn.Origin = []string{"", OriginManual, OriginEngine}[(i+round)%3]
			b.Bans = append(b.Bans, bn)
			b.Events = append(b.Events, testEvent(i+round))
		}
		if err := multi.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
		applyOneByOne(t, single.db, b)
		// Flags are written the same way by both; only the bulk tables are compared.
		if got, want := dumpTables(t, multi.db), dumpTables(t, single.db); got != want {
			t.Fatalf("round %d (%d rows): tables differ\nmulti-row:\n%s\none by one:\n%s", round, n, got, want)
		}
	}
}

// A batch that fails half-way leaves nothing of itself behind.
func TestMultiRowFailureRollsBack(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	if err := s.Apply(ctx, &Batch{Events: []Event{testEvent(0)}}); err != nil {
		t.Fatal(err)
	}
	// A trigger makes the 200th event row fail: the batch's sources and
	// bans, and a full chunk of its events, went in before.
	if _, err := s.db.Exec(fmt.Sprintf(`CREATE TRIGGER fail_event BEFORE INSERT ON events WHEN NEW.time = %d
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`, ns(testEvent(199).Time))); err != nil {
		t.Fatal(err)
	}
	b := &Batch{}
	for i := range 3 * rowsPerInsert {
		b.Sources = append(b.Sources, testSource(i))
		b.Bans = append(b.Bans, testBan(i))
		b.Events = append(b.Events, testEvent(i))
	}
	err := s.Apply(ctx, b)
	if err == nil || !strings.Contains(err.Error(), "injected failure") || !strings.Contains(err.Error(), "events rows") {
		t.Fatalf("Apply: %v, want the injected failure naming the events rows", err)
	}
	sum, err := s.Summary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Sources != 0 || sum.BansEver != 0 || sum.Events != 1 {
		t.Errorf("after a failed batch: %+v, want only the one event written before", sum)
	}
}

// The full-chunk statements fit the connection's parameter limit
// (SQLITE_LIMIT_VARIABLE_NUMBER read from a live connection: another build
// of SQLite may allow fewer).
func TestMultiRowFitsVariableLimit(t *testing.T) {
	s, _ := open(t)
	conn, err := s.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const sqliteLimitVariableNumber = 9 // SQLITE_LIMIT_VARIABLE_NUMBER
	limit, err := sqlite.Limit(conn, sqliteLimitVariableNumber, -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SQLITE_LIMIT_VARIABLE_NUMBER %d", limit)
	for _, m := range []*multiInsert{insertSources, insertBans, insertEvents} {
		if n := rowsPerInsert * m.cols; n > limit {
			t.Errorf("%s: %d parameters a statement, the limit is %d", m.table, n, limit)
		}
		if got := strings.Count(m.query(rowsPerInsert), "?"); got != rowsPerInsert*m.cols {
			t.Errorf("%s: %d placeholders, want %d", m.table, got, rowsPerInsert*m.cols)
		}
	}
}

// Statements are prepared for the sizes batches needed, once, and kept.
func TestInsertStatementsOnDemand(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	prepared := func(m *multiInsert) (sizes []int) {
		s.inserts.mu.Lock()
		defer s.inserts.mu.Unlock()
		if sts := s.inserts.byKind[m]; sts != nil {
			for exp, st := range sts {
				if st != nil {
					sizes = append(sizes, 1<<exp)
				}
			}
		}
		return sizes
	}
	apply := func(sources, events int) {
		t.Helper()
		b := &Batch{}
		for i := range sources {
			b.Sources = append(b.Sources, testSource(i))
		}
		for i := range events {
			b.Events = append(b.Events, testEvent(i))
		}
		if err := s.Apply(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	apply(3, 0)
	if got := prepared(insertSources); !slices.Equal(got, []int{1, 2}) {
		t.Errorf("after 3 source rows: sizes %v prepared, want [1 2]", got)
	}
	if got := prepared(insertEvents); got != nil {
		t.Errorf("no event rows yet: sizes %v prepared", got)
	}
	first := s.inserts.get(insertSources, 1)
	apply(2*rowsPerInsert+5, 1)
	if got := prepared(insertSources); !slices.Equal(got, []int{1, 2, 4, rowsPerInsert}) {
		t.Errorf("after %d source rows: sizes %v prepared", 2*rowsPerInsert+5, got)
	}
	if got := prepared(insertEvents); !slices.Equal(got, []int{1}) {
		t.Errorf("after 1 event row: sizes %v prepared", got)
	}
	if s.inserts.get(insertSources, 1) != first {
		t.Error("the 2-row statement was prepared again")
	}
	if got := readSourceRows(t, s.db); len(got) != 2*rowsPerInsert+5 {
		t.Errorf("%d source rows", len(got))
	}
}

// Without prepared statements (prepare did not run), the writer prepares
// in the transaction and writes the same rows.
func TestMultiRowWithoutCache(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	b := &Batch{}
	for i := range rowsPerInsert + 3 {
		b.Sources = append(b.Sources, testSource(i))
		b.Bans = append(b.Bans, testBan(i))
		b.Events = append(b.Events, testEvent(i))
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := applyTx(ctx, &rowWriter{ctx: ctx, tx: tx, stmts: &insertStmts{}}, b, t0); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	ref, _ := open(t)
	if err := ref.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, want := dumpTables(t, s.db), dumpTables(t, ref.db); got != want {
		t.Errorf("tables differ:\n%s\nwant\n%s", got, want)
	}
}

// Apply from two goroutines at once (the Store is safe for concurrent use):
// statements are prepared and shared without a race or a deadlock, and
// every row arrives.
func TestMultiRowConcurrentApply(t *testing.T) {
	s, _ := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const writers, batches = 2, 12
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			for i := range batches {
				b := &Batch{}
				for j := range (i*37 + w*11) % (2*rowsPerInsert + 9) {
					e := testEvent(j)
					e.Decision = fmt.Sprint(w)
					b.Events = append(b.Events, e)
					u := testSource(j)
					u.Session = int64(w*100_000 + j) // each writer its own keys
					b.Sources = append(b.Sources, u)
				}
				if err := s.Apply(ctx, b); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	want := 0
	keys := 0
	for w := range writers {
		most := 0
		for i := range batches {
			n := (i*37 + w*11) % (2*rowsPerInsert + 9)
			want += n
			most = max(most, n)
		}
		keys += most
	}
	if got := len(readEventRows(t, s.db)); got != want {
		t.Errorf("%d events, want %d", got, want)
	}
	if got := len(readSourceRows(t, s.db)); got != keys {
		t.Errorf("%d source rows, want %d", got, keys)
	}
}
