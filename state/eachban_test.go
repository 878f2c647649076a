package state

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestEachBan: rows at or after since, longest-running first, each row as
// Bans reads it; an error from fn stops the walk and comes back unchanged.
func TestEachBan(t *testing.T) {
	s, _ := open(t)
	var b Batch
	for i, a := range []string{"203.0.113.1", "203.0.113.2", "2001:db8::3", "203.0.113.4"} {
		b.Bans = append(b.Bans, Ban{Addr: addr(a), Until: t0.Add(time.Duration(i-1) * time.Hour), Offences: i + 1,
			Reason: "r" + a, Created: t0.Add(-time.Hour), Monitor: i == 2})
	}
	if err := s.Apply(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	all, err := s.Bans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byAddr := map[string]Ban{}
	for _, x := range all {
		byAddr[x.Addr.String()] = x
	}
	var got []string
	err = s.EachBan(context.Background(), t0, func(x Ban) error {
		if want := byAddr[x.Addr.String()]; x != want {
			t.Errorf("EachBan row %+v, Bans has %+v", x, want)
		}
		got = append(got, x.Addr.String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// until: .1 = t0-1h (before since), .2 = t0, ::3 = t0+1h, .4 = t0+2h
	if want := "[203.0.113.4 2001:db8::3 203.0.113.2]"; fmtList(got) != want {
		t.Errorf("EachBan order %v, want %s", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.EachBan(context.Background(), t0.Add(-100*time.Hour), func(Ban) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("EachBan with a failing fn: err %v after %d calls, want the fn's error after 1", err, calls)
	}
	var cache int
	if err := s.db.QueryRow(`PRAGMA cache_size`).Scan(&cache); err != nil || cache != -512 {
		t.Errorf("cache_size %d %v, want -512 (KiB)", cache, err)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out + "]"
}
