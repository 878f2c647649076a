package ami

import "strings"

// Every value of a Message is a substring of one string holding the whole
// message; whatever outlives the message (an aggregate, an event-log row)
// must not pin it. These return a constant for a known name and a copy
// otherwise.

// InternType returns the constant for a known security event type.
func InternType(s string) string {
	switch s {
	case EventChallengeSent:
		return EventChallengeSent
	case EventInvalidAccountID:
		return EventInvalidAccountID
	case EventChallengeResponseFailed:
		return EventChallengeResponseFailed
	case EventSuccessfulAuth:
		return EventSuccessfulAuth
	case EventInvalidPassword:
		return EventInvalidPassword
	case EventFailedACL:
		return EventFailedACL
	case EventRequestBadFormat:
		return EventRequestBadFormat
	case EventRequestNotAllowed:
		return EventRequestNotAllowed
	case EventUnexpectedAddress:
		return EventUnexpectedAddress
	case EventInvalidTransport:
		return EventInvalidTransport
	case EventAuthMethodNotAllowed:
		return EventAuthMethodNotAllowed
	case EventRequestNotSupported:
		return EventRequestNotSupported
	case EventSessionLimit:
		return EventSessionLimit
	case EventMemoryLimit:
		return EventMemoryLimit
	case EventLoadAverageLimit:
		return EventLoadAverageLimit
	}
	return strings.Clone(s)
}

// InternService returns the constant for a known Service value.
func InternService(s string) string {
	switch s {
	case "PJSIP":
		return "PJSIP"
	case "AMI":
		return "AMI"
	case "SIP":
		return "SIP"
	case "IAX2":
		return "IAX2"
	case "":
		return ""
	}
	return strings.Clone(s)
}

// InternSeverity returns the constant for a known Severity value.
func InternSeverity(s string) string {
	switch s {
	case "Informational":
		return "Informational"
	case "Error":
		return "Error"
	case "":
		return ""
	}
	return strings.Clone(s)
}
