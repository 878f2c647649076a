package engine

import (
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
