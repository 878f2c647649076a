package state

import (
	"context"
	"database/sql"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// schemaV1 is the layout sipsentry wrote before schema 2 (bans without
// origin/uid, allows without comment/uid), verbatim.
const schemaV1 = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
CREATE TABLE IF NOT EXISTS bans (
	addr TEXT PRIMARY KEY,
	until INTEGER NOT NULL,
	offences INTEGER NOT NULL,
	reason TEXT NOT NULL,
	created INTEGER NOT NULL,
	monitor INTEGER NOT NULL DEFAULT 0
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
	last_seen INTEGER NOT NULL
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

// TestMigrateV1: a database made by the schema-1 layout, with a ban and a
// learned allow in it, is upgraded in place by Open: the old rows keep
// their values (the ban is an engine ban with no operator), and the new
// columns hold a manual ban's origin and uid across a reopen.
func TestMigrateV1(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(schemaV1); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`INSERT INTO bans (addr, until, offences, reason, created, monitor) VALUES (?,?,?,?,?,0)`,
		"203.0.113.7", now.Add(time.Hour).UnixNano(), 2, "5 failures in 10m0s", now.UnixNano()); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Exec(`INSERT INTO allows (prefix, until, how, user_agent, first_seen, last_seen) VALUES (?,?,?,?,?,?)`,
		"203.0.113.31/32", now.Add(24*time.Hour).UnixNano(), HowUserAgent, "Bria Push", now.UnixNano(), now.UnixNano()); err != nil {
		t.Fatal(err)
	}
	old.Close()

	st, err := Open(path)
	if err != nil {
		t.Fatalf("Open of a schema-1 database: %v", err)
	}
	st.Now = func() time.Time { return now }
	ctx := context.Background()
	bans, err := st.ActiveBans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bans) != 1 || bans[0].Addr != netip.MustParseAddr("203.0.113.7") || bans[0].Offences != 2 ||
		bans[0].Origin != OriginEngine || bans[0].UID != NoUID || bans[0].Reason != "5 failures in 10m0s" {
		t.Fatalf("migrated bans %+v", bans)
	}
	allows, err := st.LearnedAllows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(allows) != 1 || allows[0].UserAgent != "Bria Push" || allows[0].UID != NoUID || allows[0].Comment != "" {
		t.Fatalf("migrated allows %+v", allows)
	}
	b := &Batch{
		Bans: []Ban{{Addr: netip.MustParseAddr("203.0.113.8"), Until: now.Add(time.Hour), Offences: 1, Reason: "manual: test",
			Created: now, Origin: OriginManual, UID: 0}},
		Allows: []Allow{{Prefix: netip.MustParsePrefix("198.51.100.0/24"), PushEvidence: PushEvidence{How: HowManual, FirstSeen: now, LastSeen: now},
			Comment: "office", UID: 1000}},
	}
	if err := st.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	st.Close()

	st, err = Open(path) // a second Open finds schema 2 and changes nothing
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.Now = func() time.Time { return now }
	var version string
	if err := st.db.QueryRow(`SELECT value FROM meta WHERE key = 'schema'`).Scan(&version); err != nil || version != "2" {
		t.Errorf("schema version %q, %v", version, err)
	}
	bans, _ = st.ActiveBans(ctx)
	var manual *Ban
	for i := range bans {
		if bans[i].Addr == netip.MustParseAddr("203.0.113.8") {
			manual = &bans[i]
		}
	}
	if len(bans) != 2 || manual == nil || manual.Origin != OriginManual || manual.UID != 0 {
		t.Errorf("bans after reopen %+v", bans)
	}
	allows, _ = st.LearnedAllows(ctx)
	found := false
	for _, a := range allows {
		if a.How == HowManual && a.Comment == "office" && a.UID == 1000 {
			found = true
		}
	}
	if !found {
		t.Errorf("manual allow not read back: %+v", allows)
	}
}
