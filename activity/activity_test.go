package activity

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

func event(typ, account, session string) *ami.SecurityEvent {
	ev := &ami.SecurityEvent{Type: typ, Service: "PJSIP", AccountID: account, SessionID: session}
	ev.Remote.AddrPort = netip.MustParseAddrPort("203.0.113.5:5060")
	return ev
}

func TestClassify(t *testing.T) {
	cases := []struct {
		ev   *ami.SecurityEvent
		want Kind
	}{
		{event(ami.EventSuccessfulAuth, "1001", "a"), KindAuthOK},
		{event(ami.EventChallengeResponseFailed, "1001", "a"), KindAuthFailed},
		{event(ami.EventInvalidPassword, "sentry", "a"), KindAuthFailed},
		{event(ami.EventInvalidAccountID, "100", "a"), KindUnknownAccount},
		{event(ami.EventChallengeSent, ami.UnknownAccount, "a"), KindUnknownAccount},
		{event(ami.EventChallengeSent, "1001", "a"), KindNeutral},
		{event(ami.EventFailedACL, "acl1003", "a"), KindACL},
		{event(ami.EventRequestBadFormat, "", "a"), KindOtherFailure},
		{event(ami.EventRequestNotAllowed, "sentry", "a"), KindOther},
		{&ami.SecurityEvent{Type: ami.EventSuccessfulAuth, Suspicion: "missing EventTV"}, KindInjection},
	}
	for _, c := range cases {
		if got := Classify(c.ev); got != c.want {
			t.Errorf("Classify(%s %q, suspicion %q) = %s, want %s", c.ev.Type, c.ev.AccountID, c.ev.Suspicion, got, c.want)
		}
	}
}

// One PJSIP request for an unknown user raises InvalidAccountID and
// ChallengeSent(<unknown>) with the same Call-ID: one attempt, not two.
func TestObserveCountsAPairOnce(t *testing.T) {
	var s Source
	at := time.Date(2026, 11, 25, 13, 12, 7, 0, time.UTC)
	for i, sess := range []string{"1-1@x", "2-1@x"} {
		if _, counted := s.Observe(event(ami.EventInvalidAccountID, "10"+string(rune('0'+i)), sess), at); !counted {
			t.Fatalf("InvalidAccountID %d not counted", i)
		}
		if _, counted := s.Observe(event(ami.EventChallengeSent, ami.UnknownAccount, sess), at); counted {
			t.Fatalf("ChallengeSent of the same request %d counted again", i)
		}
	}
	if s.Counts.UnknownAccount != 2 || s.Counts.Failures() != 2 {
		t.Fatalf("counts = %+v, want 2 unknown-account attempts", s.Counts)
	}
	if s.DistinctAccounts != 2 || len(s.TopAccounts(3)) != 2 {
		t.Fatalf("accounts = %d %v", s.DistinctAccounts, s.Accounts)
	}
}

func TestObserveIgnoresZeroTime(t *testing.T) {
	var s Source
	first := time.Date(2026, 11, 25, 13, 44, 0, 0, time.UTC)
	s.Observe(event(ami.EventInvalidAccountID, "9001", "a"), first)
	// s9-11's forged block has no EventTV: its time is zero.
	s.Observe(event(ami.EventSuccessfulAuth, "", "b"), time.Time{})
	if !s.FirstSeen.Equal(first) || !s.LastSeen.Equal(first) {
		t.Fatalf("first/last = %v/%v, want both %v", s.FirstSeen, s.LastSeen, first)
	}
}

func TestAccountsBounded(t *testing.T) {
	var s Source
	at := time.Now()
	for i := range 1000 {
		s.Observe(event(ami.EventInvalidAccountID, string(rune('a'+i%26))+string(rune('A'+i/26)), "s"+string(rune(i))), at)
	}
	if len(s.Accounts) != MaxAccounts || s.DistinctAccounts != 1000 {
		t.Fatalf("kept %d accounts, distinct %d; want %d kept, 1000 distinct", len(s.Accounts), s.DistinctAccounts, MaxAccounts)
	}
}

// A forged request for an unknown account gives the same two events as an
// honest one (InvalidAccountID, then ChallengeSent(<unknown>) on the same
// session, the same millisecond): one injection attempt, not two (issue 13).
func TestForgedPairCountsOnce(t *testing.T) {
	var s Source
	at := time.Date(2026, 11, 25, 13, 43, 53, 699e6, time.UTC)
	sess := `x",LocalAddress="IPV4/UDP/127.0.0.1/5060",RemoteAddress="IPV4/UDP/6.6.6.6/5060`
	for _, ev := range []ami.SecurityEvent{
		{Type: ami.EventInvalidAccountID, AccountID: "9001", SessionID: sess, Suspicion: "repeated RemoteAddress"},
		{Type: ami.EventChallengeSent, AccountID: ami.UnknownAccount, SessionID: sess, Suspicion: "repeated RemoteAddress"},
	} {
		s.Observe(&ev, at)
	}
	if s.Counts.Injection != 1 {
		t.Fatalf("injection %d, want 1 attempt for the pair", s.Counts.Injection)
	}
}
