package engine

import (
	"net/netip"
	"time"

	"github.com/sipsentry/sipsentry/activity"
	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/engine/failmem"
)

// observation turns a classified event into what the failure memory
// counts. k and counted come from activity.Source.Observe (counted is false
// for the second half of PJSIP's unknown-account pair); at is the engine's
// clock. Blind evidence is judged against the event's own time (EventTV,
// Asterisk's clock, the one its nonces carry).
func observation(ev *ami.SecurityEvent, k activity.Kind, counted bool, at time.Time) failmem.Observation {
	o := failmem.Observation{Time: at, Transport: failmem.ParseTransport(ev.Remote.Transport)}
	switch {
	case k == activity.KindAuthOK:
		o.Kind = failmem.AuthOK
	case k == activity.KindNeutral && ev.Type == ami.EventChallengeSent:
		o.Kind = failmem.ChallengeSent
	case !counted || !k.IsFailure():
		o.Kind = failmem.Neutral
	case ev.Type == ami.EventChallengeResponseFailed:
		o.Kind = failmem.ChallengeFailed
		o.Blind = ev.Service == "PJSIP" && failmem.BlindNonce(ev.Field("Challenge"), ev.Time)
	default:
		o.Kind = failmem.Failure
	}
	if o.Kind == failmem.Failure || o.Kind == failmem.ChallengeFailed {
		if a := ev.AccountID; a != "" && a != ami.UnknownAccount {
			o.Account = failmem.HashAccount(a)
		}
	}
	return o
}

// banned reports whether a holds a ban (or, in monitor mode, a would-ban)
// that ban() would leave as it is; Handle then makes no second decision for
// a source whose aggregate was evicted meanwhile.
func (b *banBook) banned(a netip.Addr, now int64, enforce bool) bool {
	b.bansMu.Lock()
	defer b.bansMu.Unlock()
	bi, ok := b.byAddr.Get(a)
	return ok && bi.until > now && (!bi.monitor || !enforce)
}

// eventLogRate is how many event-log rows a second are written in full:
// writing 10k rows a second cost the daemon more CPU than deciding (issue
// 11: persistence ≤ 10 % of the CPU). Under a flood the rest are sampled
// out (counted as dropped writes), except successful logins (known
// addresses are restored from them at start). Rows that carry a decision
// have a budget of their own, decisionLogRate: a ban burst of 10k a second
// keeps 1000 of their rows, as the bans table holds every ban with its
// reason and time anyway. The source aggregates and the failure memory
// still count every event.
const eventLogRate, decisionLogRate = 1000, 1000

// eventRowClass says how the sampler treats a row.
type eventRowClass uint8

const (
	rowPlain    eventRowClass = iota // within eventLogRate
	rowDecision                      // within decisionLogRate
	rowAlways                        // never sampled out
)

// eventSampler spends the per-second budgets; guarded by sources.tableMu.
type eventSampler struct {
	second            int64 // Unix second of the budgets being spent
	used, usedDecided int
}

func (s *eventSampler) keep(now int64, class eventRowClass) bool {
	if sec := now / int64(time.Second); sec != s.second {
		s.second, s.used, s.usedDecided = sec, 0, 0
	}
	switch class {
	case rowAlways:
		return true
	case rowDecision:
		if s.usedDecided < decisionLogRate {
			s.usedDecided++
			return true
		}
		return false
	}
	if s.used < eventLogRate {
		s.used++
		return true
	}
	return false
}
