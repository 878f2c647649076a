package state

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Authenticated calls fn with every address whose latest successful
// authentication in the event log (kind auth_ok) is at or after since, and
// that time. The engine seeds its "known" addresses from it at start, so a
// restart does not expose the phones to forged failures for known_for.
func (s *Store) Authenticated(ctx context.Context, since time.Time, fn func(netip.Addr, time.Time)) error {
	rows, err := s.db.QueryContext(ctx, `SELECT addr, MAX(time) FROM events WHERE kind = 'auth_ok' AND time >= ? GROUP BY addr`, ns(since))
	if err != nil {
		return fmt.Errorf("state: reading authenticated addresses: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var addr string
		var t int64
		if err := rows.Scan(&addr, &t); err != nil {
			return fmt.Errorf("state: reading authenticated addresses: %w", err)
		}
		if a, err := netip.ParseAddr(addr); err == nil {
			fn(a, tm(t))
		}
	}
	return rows.Err()
}
