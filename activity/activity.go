// Package activity classifies security events and keeps what one source did.
// The engine, the state DB and the sources report share it so that "auth
// failed" means the same thing in a ban decision and in a report row.
//
// It holds no addresses taken from attacker-controlled fields: a Source is
// keyed by the event's true source only.
package activity

import (
	"net/netip"
	"slices"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// Kind is what an event says about its source.
type Kind uint8

const (
	KindNeutral        Kind = iota // e.g. ChallengeSent for a known account: normal traffic
	KindAuthOK                     // SuccessfulAuth
	KindAuthFailed                 // InvalidPassword, ChallengeResponseFailed
	KindUnknownAccount             // InvalidAccountID, ChallengeSent with <unknown>
	KindACL                        // FailedACL
	KindOtherFailure               // RequestBadFormat, UnexpectedAddress, InvalidTransport, AuthMethodNotAllowed
	KindOther                      // other security events (RequestNotAllowed, limits, ...)
	KindInjection                  // forged or repeated security-event fields
)

var kindNames = [...]string{"neutral", "auth_ok", "auth_failed", "unknown_account", "acl", "other_failure", "other", "injection"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "?"
}

// IsFailure reports whether the kind counts toward a ban.
func (k Kind) IsFailure() bool {
	switch k {
	case KindAuthFailed, KindUnknownAccount, KindACL, KindOtherFailure, KindInjection:
		return true
	}
	return false
}

// Classify says what one security event means.
func Classify(ev *ami.SecurityEvent) Kind {
	if ev.IsInjection() {
		return KindInjection
	}
	switch ev.Type {
	case ami.EventSuccessfulAuth:
		return KindAuthOK
	case ami.EventInvalidPassword, ami.EventChallengeResponseFailed:
		return KindAuthFailed
	case ami.EventInvalidAccountID:
		return KindUnknownAccount
	case ami.EventChallengeSent:
		if ev.AccountID == ami.UnknownAccount {
			return KindUnknownAccount
		}
		return KindNeutral
	case ami.EventFailedACL:
		return KindACL
	case ami.EventRequestBadFormat, ami.EventUnexpectedAddress, ami.EventInvalidTransport, ami.EventAuthMethodNotAllowed:
		return KindOtherFailure
	}
	return KindOther
}

// Counts are a source's events by kind, one attempt counted once.
type Counts struct {
	AuthOK         int `json:"auth_ok"`
	AuthFailed     int `json:"auth_failed"`
	UnknownAccount int `json:"unknown_account"`
	ACL            int `json:"acl"`
	Other          int `json:"other"` // other failures and other events
	Injection      int `json:"injection"`
}

// Failures is the sum that counts toward a ban.
func (c Counts) Failures() int {
	return c.AuthFailed + c.UnknownAccount + c.ACL + c.Other + c.Injection
}

// MaxAccounts bounds the accounts remembered per source: a scanner trying
// a million names must not grow memory.
const MaxAccounts = 16

// AccountCount is one account name tried and how often.
type AccountCount struct {
	Account string `json:"account"`
	Count   int    `json:"count"`
}

// Source is the aggregate of one source address.
type Source struct {
	Addr      netip.Addr
	FirstSeen time.Time
	LastSeen  time.Time
	Counts    Counts
	// Accounts holds up to MaxAccounts names with counts; DistinctAccounts
	// keeps counting past that.
	Accounts         []AccountCount
	DistinctAccounts int
	LastUserAgent    string
	LastService      string

	// unpairedInvalid counts this source's InvalidAccountID events not yet
	// followed by the ChallengeSent(<unknown>) that PJSIP raises for the
	// same request; lastInvalid is the newest one's time (UnixNano).
	unpairedInvalid uint8
	lastInvalid     int64
}

// PairWindow is how close in time PJSIP's ChallengeSent(<unknown>) follows
// the InvalidAccountID of the same request (recorded: 0–3 ms). The pair is
// recognised by its shape — same source, InvalidAccountID first, adjacent in
// time — never by the SessionID, which is the attacker's Call-ID: a scanner
// reusing one Call-ID for every request must not make its attempts look like
// halves of one pair.
const PairWindow = time.Second

// maxUnpaired bounds the InvalidAccountID events waiting for their half
// (concurrent requests of one source interleave their pairs).
const maxUnpaired = 16

// Observe adds one event (already attributed to s.Addr) and returns its kind
// and whether it counted as a new attempt (false for the second half of a
// pair that one request produced).
func (s *Source) Observe(ev *ami.SecurityEvent, at time.Time) (Kind, bool) {
	k := Classify(ev)
	// A forged event block may carry no time at all: it must not reset
	// FirstSeen to the zero time.
	if !at.IsZero() {
		if s.FirstSeen.IsZero() || at.Before(s.FirstSeen) {
			s.FirstSeen = at
		}
		if at.After(s.LastSeen) {
			s.LastSeen = at
		}
	}
	if ev.Service != "" {
		s.LastService = ev.Service
	}
	counted := true
	switch k {
	case KindAuthOK:
		s.Counts.AuthOK++
	case KindAuthFailed:
		s.Counts.AuthFailed++
	case KindUnknownAccount:
		if ev.Type == ami.EventChallengeSent && s.pairsWithInvalid(at) {
			// The second half of the request an InvalidAccountID counted.
			s.unpairedInvalid--
			counted = false
		} else {
			s.Counts.UnknownAccount++
		}
		if ev.Type == ami.EventInvalidAccountID {
			if s.unpairedInvalid < maxUnpaired {
				s.unpairedInvalid++
			}
			s.lastInvalid = at.UnixNano()
		}
	case KindACL:
		s.Counts.ACL++
	case KindOtherFailure, KindOther:
		s.Counts.Other++
	case KindInjection:
		// A forged request for an unknown account is the same pair of
		// events as an honest one: count the attempt once (issue 13: one
		// request showed as injection 2).
		if ev.Type == ami.EventChallengeSent && ev.AccountID == ami.UnknownAccount && s.pairsWithInvalid(at) {
			s.unpairedInvalid--
			counted = false
		} else {
			s.Counts.Injection++
		}
		if ev.Type == ami.EventInvalidAccountID {
			if s.unpairedInvalid < maxUnpaired {
				s.unpairedInvalid++
			}
			s.lastInvalid = at.UnixNano()
		}
	case KindNeutral:
		counted = false
	}
	if acct := ev.AccountID; acct != "" && acct != ami.UnknownAccount && k != KindAuthOK && k != KindNeutral {
		s.addAccount(acct)
	}
	return k, counted
}

// pairsWithInvalid reports whether a ChallengeSent(<unknown>) at at is the
// second half of an InvalidAccountID still unpaired. A zero time (no clock)
// pairs by order alone.
func (s *Source) pairsWithInvalid(at time.Time) bool {
	if s.unpairedInvalid == 0 {
		return false
	}
	if at.IsZero() {
		return true
	}
	d := at.UnixNano() - s.lastInvalid
	if d < 0 {
		d = -d
	}
	if d > int64(PairWindow) {
		s.unpairedInvalid = 0 // stale: the halves of those requests never came
		return false
	}
	return true
}

func (s *Source) addAccount(acct string) {
	for i := range s.Accounts {
		if s.Accounts[i].Account == acct {
			s.Accounts[i].Count++
			return
		}
	}
	s.DistinctAccounts++
	if len(s.Accounts) < MaxAccounts {
		s.Accounts = append(s.Accounts, AccountCount{Account: acct, Count: 1})
	}
}

// TopAccounts returns up to n accounts, most tried first.
func (s *Source) TopAccounts(n int) []AccountCount {
	out := slices.Clone(s.Accounts)
	slices.SortStableFunc(out, func(a, b AccountCount) int { return b.Count - a.Count })
	if len(out) > n {
		out = out[:n]
	}
	return out
}
