package state

import (
	"context"
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

func TestAuthenticated(t *testing.T) {
	st, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	phone, old, scanner := netip.MustParseAddr("198.51.100.21"), netip.MustParseAddr("198.51.100.22"), netip.MustParseAddr("203.0.113.11")
	b := &Batch{Events: []Event{
		{Time: now.Add(-48 * time.Hour), Addr: phone, Type: "SuccessfulAuth", Kind: "auth_ok", Service: "PJSIP"},
		{Time: now.Add(-time.Hour), Addr: phone, Type: "SuccessfulAuth", Kind: "auth_ok", Service: "PJSIP"},
		{Time: now.Add(-10 * 24 * time.Hour), Addr: old, Type: "SuccessfulAuth", Kind: "auth_ok", Service: "PJSIP"},
		{Time: now.Add(-time.Minute), Addr: scanner, Type: "ChallengeResponseFailed", Kind: "auth_failed", Service: "PJSIP"},
	}}
	if err := st.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	got := map[netip.Addr]time.Time{}
	if err := st.Authenticated(context.Background(), now.Add(-7*24*time.Hour), func(a netip.Addr, at time.Time) { got[a] = at }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[phone].Equal(now.Add(-time.Hour)) {
		t.Fatalf("got %v, want only %s at its latest auth", got, phone)
	}
}
