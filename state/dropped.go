package state

// The dropped_sources table (issue 12): what the firewall's country and ban
// rules dropped, per source address, as dropwatch aggregated it from the
// NFLOG copies. It lives in its own file and creates its own table, so the
// rest of the store does not change. Sets (reasons, protocols, methods,
// push parameters) are stored as bit masks over fixed vocabularies so that
// a save merges with one UPSERT per address (OR of the masks).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"time"
)

const droppedSchema = `
CREATE TABLE IF NOT EXISTS dropped_sources (
	addr        TEXT PRIMARY KEY,
	country     TEXT NOT NULL DEFAULT '',
	first_seen  INTEGER NOT NULL,
	last_seen   INTEGER NOT NULL,
	packets     INTEGER NOT NULL DEFAULT 0,
	reasons     INTEGER NOT NULL DEFAULT 0,
	protos      INTEGER NOT NULL DEFAULT 0,
	last_port   INTEGER NOT NULL DEFAULT 0,
	methods     INTEGER NOT NULL DEFAULT 0,
	user_agent  TEXT NOT NULL DEFAULT '',
	push_params INTEGER NOT NULL DEFAULT 0,
	push        TEXT NOT NULL DEFAULT '',
	push_at     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dropped_last_seen ON dropped_sources(last_seen);
`

// Vocabularies of the dropped_sources sets, in bit order. A name outside
// them is stored as "other" (methods, protocols, reasons) or not at all
// (push parameters). Append only: the bit positions are in the database.
var (
	DroppedReasons    = []string{"ban", "geo", "other"}
	DroppedProtos     = []string{"udp", "tcp", "icmp", "icmpv6", "other"}
	DroppedMethods    = []string{"REGISTER", "INVITE", "OPTIONS", "ACK", "BYE", "CANCEL", "SUBSCRIBE", "NOTIFY", "MESSAGE", "INFO", "PUBLISH", "REFER", "PRACK", "UPDATE", "other"}
	DroppedPushParams = []string{"pn-provider", "pn-prid", "pn-param", "pn-tok", "app-id"}
)

// Push probation states of a dropped source (DroppedSource.Push).
const (
	PushCandidate = "candidate" // a dropped REGISTER looked like a push server
	PushProbation = "probation" // let through for push.probation
	PushLearned   = "learned"   // learned as a push server (FCrDNS or auth)
	PushBanned    = "banned"    // failed during its probation
	PushEnded     = "ended"     // its probation ended in silence
	PushRefused   = "refused"   // no probation: once a day / per-hour cap / disabled
)

// DroppedSource is what the firewall dropped from one address. As an
// argument of SaveDropped it is a delta (see there); as a result, the total.
// UserAgent is the sender's bytes: print it escaped.
type DroppedSource struct {
	Addr       netip.Addr
	Country    string // ISO code, "" if unknown
	FirstSeen  time.Time
	LastSeen   time.Time
	Packets    uint64
	Reasons    []string // of DroppedReasons
	Protos     []string // of DroppedProtos
	LastPort   uint16   // destination port of the last packet
	Methods    []string // of DroppedMethods
	UserAgent  string   // the last one seen
	PushParams []string // of DroppedPushParams
	Push       string   // a Push* state, "" if never a candidate
	PushAt     time.Time
}

// CountryCount is one row of DroppedCountries.
type CountryCount struct {
	Country string
	Sources int
	Packets uint64
}

func maskOf(names, vocab []string, other bool) int64 {
	var m int64
	for _, n := range names {
		i := slices.Index(vocab, n)
		if i < 0 && other {
			i = len(vocab) - 1
		}
		if i >= 0 {
			m |= 1 << i
		}
	}
	return m
}

func namesOf(m int64, vocab []string) []string {
	var out []string
	for u := uint64(m); u != 0; u &= u - 1 {
		if i := bits.TrailingZeros64(u); i < len(vocab) {
			out = append(out, vocab[i])
		}
	}
	return out
}

// SaveDropped merges each record into its address's row in one
// transaction: Packets is added, the sets are joined, FirstSeen keeps the
// earliest, LastSeen the latest; Country, LastPort, UserAgent and Push
// replace the stored value when set.
func (s *Store) SaveDropped(ctx context.Context, recs []DroppedSource) error {
	if s.ro {
		return ErrReadOnly
	}
	if len(recs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state: begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, droppedSchema); err != nil {
		return fmt.Errorf("state: create dropped_sources: %w", err)
	}
	st, err := tx.PrepareContext(ctx, `INSERT INTO dropped_sources
		(addr, country, first_seen, last_seen, packets, reasons, protos, last_port, methods, user_agent, push_params, push, push_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(addr) DO UPDATE SET
			country = CASE WHEN excluded.country <> '' THEN excluded.country ELSE country END,
			first_seen = MIN(first_seen, excluded.first_seen),
			last_seen = MAX(last_seen, excluded.last_seen),
			packets = packets + excluded.packets,
			reasons = reasons | excluded.reasons,
			protos = protos | excluded.protos,
			last_port = CASE WHEN excluded.last_port <> 0 THEN excluded.last_port ELSE last_port END,
			methods = methods | excluded.methods,
			user_agent = CASE WHEN excluded.user_agent <> '' THEN excluded.user_agent ELSE user_agent END,
			push_params = push_params | excluded.push_params,
			push = CASE WHEN excluded.push <> '' THEN excluded.push ELSE push END,
			push_at = CASE WHEN excluded.push <> '' THEN excluded.push_at ELSE push_at END`)
	if err != nil {
		return fmt.Errorf("state: prepare dropped upsert: %w", err)
	}
	defer st.Close()
	for _, r := range recs {
		if !r.Addr.IsValid() {
			return fmt.Errorf("state: dropped source without an address")
		}
		_, err := st.ExecContext(ctx, r.Addr.Unmap().String(), r.Country, ns(r.FirstSeen), ns(r.LastSeen), int64(r.Packets),
			maskOf(r.Reasons, DroppedReasons, true), maskOf(r.Protos, DroppedProtos, true), int64(r.LastPort),
			maskOf(r.Methods, DroppedMethods, true), r.UserAgent, maskOf(r.PushParams, DroppedPushParams, false),
			r.Push, ns(r.PushAt))
		if err != nil {
			return fmt.Errorf("state: save dropped %s: %w", r.Addr, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	return nil
}

// hasDropped tells whether the table exists (a daemon without drop mode
// never creates it).
func (s *Store) hasDropped(ctx context.Context) (bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'dropped_sources'`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("state: %w", err)
	}
	return n > 0, nil
}

// DroppedSources returns the sources the firewall dropped that were last
// seen at or after since (zero: all), most recent first. This is what
// `sipsentry sources` shows with the status "dropped".
func (s *Store) DroppedSources(ctx context.Context, since time.Time) ([]DroppedSource, error) {
	if ok, err := s.hasDropped(ctx); err != nil || !ok {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, `SELECT addr, country, first_seen, last_seen, packets, reasons, protos, last_port,
		methods, user_agent, push_params, push, push_at FROM dropped_sources WHERE last_seen >= ? ORDER BY last_seen DESC, addr`, ns(since))
	if err != nil {
		return nil, fmt.Errorf("state: dropped sources: %w", err)
	}
	defer rows.Close()
	var out []DroppedSource
	for rows.Next() {
		var (
			addr, country, ua, push              string
			first, last, pkts, port, pushAt      int64
			reasons, protos, methods, pushParams int64
		)
		if err := rows.Scan(&addr, &country, &first, &last, &pkts, &reasons, &protos, &port, &methods, &ua, &pushParams, &push, &pushAt); err != nil {
			return nil, fmt.Errorf("state: dropped sources: %w", err)
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			continue // not written by SaveDropped
		}
		out = append(out, DroppedSource{Addr: a, Country: country, FirstSeen: tm(first), LastSeen: tm(last), Packets: uint64(pkts),
			Reasons: namesOf(reasons, DroppedReasons), Protos: namesOf(protos, DroppedProtos), LastPort: uint16(port),
			Methods: namesOf(methods, DroppedMethods), UserAgent: ua, PushParams: namesOf(pushParams, DroppedPushParams),
			Push: push, PushAt: tm(pushAt)})
	}
	return out, rows.Err()
}

// DroppedCountries returns the countries of the sources dropped since
// `since` with their total packets, most packets first, at most limit rows
// (0: all). `sipsentry status` shows the last hour's top countries.
func (s *Store) DroppedCountries(ctx context.Context, since time.Time, limit int) ([]CountryCount, error) {
	if ok, err := s.hasDropped(ctx); err != nil || !ok {
		return nil, err
	}
	if limit <= 0 {
		limit = -1
	}
	rows, err := s.db.QueryContext(ctx, `SELECT country, count(*), sum(packets) FROM dropped_sources WHERE last_seen >= ?
		GROUP BY country ORDER BY sum(packets) DESC, country LIMIT ?`, ns(since), limit)
	if err != nil {
		return nil, fmt.Errorf("state: dropped countries: %w", err)
	}
	defer rows.Close()
	var out []CountryCount
	for rows.Next() {
		var c CountryCount
		var pkts int64
		if err := rows.Scan(&c.Country, &c.Sources, &pkts); err != nil {
			return nil, fmt.Errorf("state: dropped countries: %w", err)
		}
		c.Packets = uint64(pkts)
		out = append(out, c)
	}
	return out, rows.Err()
}

// PruneDropped deletes the rows last seen before `before` and then, past
// maxRows rows (0: no cap), the least recently seen ones: spoofed sources
// can mint a row each, so the table needs a bound besides its age.
func (s *Store) PruneDropped(ctx context.Context, before time.Time, maxRows int) (int64, error) {
	if s.ro {
		return 0, ErrReadOnly
	}
	if ok, err := s.hasDropped(ctx); err != nil || !ok {
		return 0, err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM dropped_sources WHERE last_seen < ?`, ns(before))
	if err != nil {
		return 0, fmt.Errorf("state: prune dropped: %w", err)
	}
	n, _ := res.RowsAffected()
	if maxRows <= 0 {
		return n, nil
	}
	var cutoff int64
	err = s.db.QueryRowContext(ctx, `SELECT last_seen FROM dropped_sources ORDER BY last_seen DESC LIMIT 1 OFFSET ?`, maxRows).Scan(&cutoff)
	if errors.Is(err, sql.ErrNoRows) {
		return n, nil // within the cap
	}
	if err != nil {
		return n, fmt.Errorf("state: prune dropped: %w", err)
	}
	// Rows seen at the cutoff time itself go too: the cap is kept, never
	// exceeded, at the price of a few rows more.
	res, err = s.db.ExecContext(ctx, `DELETE FROM dropped_sources WHERE last_seen <= ?`, cutoff)
	if err != nil {
		return n, fmt.Errorf("state: prune dropped: %w", err)
	}
	m, _ := res.RowsAffected()
	return n + m, nil
}
