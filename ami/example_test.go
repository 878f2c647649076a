package ami_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// captured is cut from the recordings of a real Asterisk 22 in
// shared/testdata/asterisk: an IPv6 scan (ami-s8-ipv6-tcp-netns.raw) and
// the s9-10 and s9-11 injections (ami-s9-injection.raw), where a From user
// of "x%0D%0ARemoteAddress%3A%20IPV4/UDP/6.6.6.6/1" added a forged
// RemoteAddress header and "%0D%0A%0D%0AEvent%3A%20SuccessfulAuth" split an
// event in two.
const captured = "Asterisk Call Manager/11.0.0\r\n" +
	"Event: InvalidAccountID\r\nPrivilege: security,all\r\nSystemName: sentrylab\r\n" +
	"EventTV: 2026-11-25T13:13:07.486+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\n" +
	"AccountID: 100\r\nSessionID: 1-26559@::1\r\nLocalAddress: IPV6/UDP/::1/5060\r\nRemoteAddress: IPV6/UDP/::1/5077\r\n\r\n" +
	"Event: InvalidAccountID\r\nPrivilege: security,all\r\nSystemName: sentrylab\r\n" +
	"EventTV: 2026-11-25T13:44:09.511+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\n" +
	"AccountID: x\r\nRemoteAddress: IPV4/UDP/6.6.6.6/1\r\nSessionID: 1-4323@127.0.0.13\r\n" +
	"LocalAddress: IPV4/UDP/127.0.0.1/5060\r\nRemoteAddress: IPV4/UDP/127.0.0.13/5099\r\n\r\n" +
	"Event: InvalidAccountID\r\nPrivilege: security,all\r\nSystemName: sentrylab\r\n" +
	"EventTV: 2026-11-25T13:44:10.835+0000\r\nSeverity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: \r\n\r\n" +
	"Event: SuccessfulAuth\r\nSessionID: 1-4332@127.0.0.13\r\nLocalAddress: IPV4/UDP/127.0.0.1/5060\r\n" +
	"RemoteAddress: IPV4/UDP/127.0.0.13/5100\r\n\r\n"

// Read security events from an AMI byte stream and attribute each to its
// true source. Injected headers never become the source; the events that
// carry them are flagged.
func Example() {
	r := ami.NewReader(strings.NewReader(captured), ami.ReaderOptions{})
	banner, err := r.ReadBanner()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(banner)
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		if !ami.IsSecurityEvent(&m) {
			continue
		}
		ev, err := ami.ParseSecurityEvent(&m)
		switch {
		case errors.Is(err, ami.ErrNoSource):
			fmt.Printf("%s: no source to act on (%s)\n", ev.Type, ev.Suspicion)
			continue
		case err != nil:
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s %s %s account=%q", ev.Type, ev.Remote.Transport, ev.Remote.AddrPort, ev.AccountID)
		if ev.IsInjection() {
			fmt.Printf(" INJECTION: %s", ev.Suspicion)
		}
		fmt.Println()
	}
	fmt.Printf("%+v\n", r.Stats())
	// Output:
	// Asterisk Call Manager/11.0.0
	// InvalidAccountID UDP [::1]:5077 account="100"
	// InvalidAccountID UDP 127.0.0.13:5099 account="x" INJECTION: repeated RemoteAddress
	// InvalidAccountID: no source to act on (missing SessionID; missing LocalAddress; missing RemoteAddress)
	// SuccessfulAuth UDP 127.0.0.13:5100 account="" INJECTION: no security Privilege; missing EventTV; missing Severity; missing Service; missing EventVersion; missing AccountID
	// {Messages:4 Malformed:0 Oversized:0}
}

// Write an action. Values holding CR or LF are refused, so data from a
// peer can never add headers to what sipsentry sends.
func ExampleWriteMessage() {
	var wire strings.Builder
	err := ami.WriteMessage(&wire, ami.Message{Headers: []ami.Header{
		{Key: "Action", Value: "Ping"}, {Key: "ActionID", Value: "sipsentry-1"},
	}})
	fmt.Printf("%q %v\n", wire.String(), err)
	err = ami.WriteMessage(&wire, ami.Message{Headers: []ami.Header{
		{Key: "Action", Value: "Ping"}, {Key: "ActionID", Value: "1\r\nAction: Originate"},
	}})
	fmt.Println(err)
	// Output:
	// "Action: Ping\r\nActionID: sipsentry-1\r\n\r\n" <nil>
	// ami: refusing to write ActionID: value holds CR or LF (would inject headers)
}

// Parse a ContactList entry of PJSIPShowContacts (abridged from the recorded
// ami-action-pjsipshowcontacts.raw) and get the address it registered from.
func ExampleParseContact() {
	const entry = "Event: ContactList\r\nActionID: pjsipshowcontacts-1\r\nObjectType: contact\r\n" +
		"ObjectName: 1001;@656cc19a5061d46a9c7512b3db18558e\r\nViaAddr: 127.0.0.31\r\n" +
		"CallId: 1-26139@127.0.0.31\r\nRegServer: sentrylab\r\nEndpoint: 1001\r\nViaPort: 5062\r\n" +
		"Uri: sip:1001@127.0.0.31:5062;transport=UDP;pn-provider=apns;pn-prid=abc;pn-param=xyz\r\n" +
		"UserAgent: Bria Push Service\r\nExpirationTime: 1795612464\r\nStatus: Reachable\r\n\r\n"
	m, err := ami.NewReader(strings.NewReader(entry), ami.ReaderOptions{}).ReadMessage()
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := ami.ParseContact(&m)
	if err != nil {
		fmt.Println(err)
		return
	}
	via, ok := c.Via()
	fmt.Println(c.Endpoint, via, ok, c.UserAgent, c.ExpirationTime.Format(time.RFC3339))
	// Output:
	// 1001 127.0.0.31:5062 true Bria Push Service 2026-11-25T13:14:24Z
}
