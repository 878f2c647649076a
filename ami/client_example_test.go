package ami_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
)

// A monitoring client: log in with the MD5 challenge, resynchronise on every
// (re)connect, receive security events in order.
func ExampleClient() {
	srv, err := amitest.Start(amitest.Options{NoFullyBooted: true, Contacts: []ami.Contact{
		{Endpoint: "1001", URI: "sip:1001@127.0.0.21:5061", UserAgent: "Bria iOS", ViaAddr: "127.0.0.21", ViaPort: "5061", Status: "Reachable"},
	}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan ami.SecurityEvent)
	c := ami.NewClient(ami.ClientConfig{
		Address: srv.Addr(), Username: "sentry", Secret: "sentry-secret", MD5: true,
		Events: "security,system", PingInterval: 15 * time.Second, Timeout: 10 * time.Second,
		OnConnect: func(ctx context.Context, c *ami.Client) error {
			cs, err := c.PJSIPShowContacts(ctx)
			for _, ct := range cs {
				via, _ := ct.Via()
				fmt.Println("contact", ct.Endpoint, via, ct.UserAgent)
			}
			srv.Send([]byte("Event: InvalidAccountID\r\nPrivilege: security,all\r\nEventTV: 2026-11-25T13:12:07.974+0000\r\n" +
				"Severity: Error\r\nService: PJSIP\r\nEventVersion: 1\r\nAccountID: 100\r\nSessionID: 1-26047@127.0.0.11\r\n" +
				"LocalAddress: IPV4/UDP/127.0.0.1/5060\r\nRemoteAddress: IPV4/UDP/127.0.0.11/5070\r\n\r\n"))
			return err
		},
		OnMessage: func(m ami.Message) {
			if ev, err := ami.ParseSecurityEvent(&m); err == nil {
				got <- ev
			}
		},
	})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	ev := <-got
	fmt.Println(ev.Type, ev.AccountID, ev.Remote.AddrPort, ev.Remote.Transport)
	cancel() // logs off
	fmt.Println("run:", <-done)
	// Output:
	// contact 1001 127.0.0.21:5061 Bria iOS
	// InvalidAccountID 100 127.0.0.11:5070 UDP
	// run: <nil>
}
