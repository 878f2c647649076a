package ami

import "time"

// Security event types, as Asterisk names them in the Event header.
const (
	EventFailedACL               = "FailedACL"
	EventInvalidAccountID        = "InvalidAccountID"
	EventSessionLimit            = "SessionLimit"
	EventMemoryLimit             = "MemoryLimit"
	EventLoadAverageLimit        = "LoadAverageLimit"
	EventRequestNotSupported     = "RequestNotSupported"
	EventRequestNotAllowed       = "RequestNotAllowed"
	EventAuthMethodNotAllowed    = "AuthMethodNotAllowed"
	EventRequestBadFormat        = "RequestBadFormat"
	EventSuccessfulAuth          = "SuccessfulAuth"
	EventUnexpectedAddress       = "UnexpectedAddress"
	EventChallengeResponseFailed = "ChallengeResponseFailed"
	EventInvalidPassword         = "InvalidPassword"
	EventChallengeSent           = "ChallengeSent"
	EventInvalidTransport        = "InvalidTransport"
)

// UnknownAccount is the AccountID PJSIP gives a request it could not match
// to an endpoint (its artificial endpoint).
const UnknownAccount = "<unknown>"

// SecurityEvent is a typed security event. AccountID, SessionID and every
// value in Fields came from the remote party (From user, Call-ID, digest):
// opaque data, never structure.
type SecurityEvent struct {
	Type         string    // one of the Event* constants
	Time         time.Time // EventTV; zero if absent or unparsable
	Severity     string    // Informational | Error
	Service      string    // PJSIP, AMI, SIP, IAX2, ...
	EventVersion string
	AccountID    string
	SessionID    string
	SessionTV    time.Time
	Local        Address
	// Remote is the true source: for a genuine event the LAST RemoteAddress
	// header (injected ones come before it; see Suspicion).
	Remote Address
	// Fields holds the event-specific headers in order (Challenge, Response,
	// ExpectedResponse, ACLName, UsingPassword, Module, ...).
	Fields []Header
	// Suspicion is non-empty when the message carries evidence of injection:
	// a repeated key, or an Event block lacking what every genuine security
	// event carries (Privilege security, EventTV, Service). The event is still
	// attributed to Remote, which is then the only address to act on.
	Suspicion string
	// Received is the message's Received: when the client read it off the
	// socket (zero when not read by a Client).
	Received time.Time
}

// Field returns the first event-specific field named key (case-insensitive).
func (e *SecurityEvent) Field(key string) string {
	for _, h := range e.Fields {
		if equalFold(h.Key, key) {
			return h.Value
		}
	}
	return ""
}

// IsInjection reports whether the event carries evidence of header injection.
func (e *SecurityEvent) IsInjection() bool { return e.Suspicion != "" }

// ContactStatus is the ContactStatus event. It carries neither source
// address nor User-Agent (PJSIPShowContacts does).
type ContactStatus struct {
	URI           string
	ContactStatus string // NonQualified, Reachable, Unreachable, Removed, Updated
	AOR           string
	EndpointName  string
	RoundtripUsec string
}

// Contact is one ContactList entry of PJSIPShowContacts.
type Contact struct {
	ObjectName     string
	Endpoint       string
	URI            string
	UserAgent      string
	ViaAddr        string // as Asterisk wrote it; see Via()
	ViaPort        string
	CallID         string
	Status         string
	ExpirationTime time.Time
	RegServer      string
}
