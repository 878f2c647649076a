package engine

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/state"
)

// TestResyncAfterLogin: a fake Asterisk (amitest) answers PJSIPShowContacts
// at every login from a list the test changes while the connection is down.
// The client's OnConnect feeds the contacts to ResyncContacts, as the
// daemon's wiring does. A push server that registered while AMI was down is
// learned from the resync (its User-Agent matches), a foreign contact that
// is no push server is flagged, the in-country phones are neither.
func TestResyncAfterLogin(t *testing.T) {
	rec := recordedContacts(t, recordedMap)
	var pushC, phone, deskPhone ami.Contact
	for _, c := range rec {
		switch c.ViaAddr {
		case "203.0.113.31":
			pushC = c
		case "198.51.100.21":
			phone = c
		case "198.51.100.22":
			deskPhone = c
		}
	}
	if pushC.UserAgent != "Bria Push Service" || phone.Endpoint == "" || deskPhone.Endpoint == "" {
		t.Fatalf("recorded contacts changed: %+v", rec)
	}
	stranger := ami.Contact{ObjectName: "1002;@cc", Endpoint: "1002", URI: "sip:1002@203.0.113.61:5060",
		UserAgent: "Zoiper rv2.10", ViaAddr: "203.0.113.61", ViaPort: "5060"}

	var mu sync.Mutex
	contacts := []ami.Contact{phone, deskPhone} // at the first login: only the phones at home
	srv := amitest.NewServer(t, amitest.Options{Handler: func(c *amitest.Conn, req ami.Message) bool {
		if !strings.EqualFold(req.Get("Action"), "PJSIPShowContacts") {
			return false
		}
		mu.Lock()
		cs := append([]ami.Contact(nil), contacts...)
		mu.Unlock()
		c.Write(amitest.ContactsResponse(req.Get("ActionID"), cs))
		return true
	}})

	// No contact look-up through Deps: the resync must carry the contact.
	r := newRig(t, rigOpt{deps: func(d *Deps) { d.Contacts = nil }})
	resynced := make(chan int, 4)
	cl := ami.NewClient(ami.ClientConfig{Address: srv.Addr(), Username: "sentry", Secret: "sentry-secret", MD5: true,
		ReconnectMax: 50 * time.Millisecond,
		OnConnect: func(ctx context.Context, c *ami.Client) error {
			cs, err := c.PJSIPShowContacts(ctx)
			if err != nil {
				return err
			}
			r.eng.ResyncContacts(ctx, cs)
			resynced <- len(cs)
			return nil
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	wait := func(want int) {
		t.Helper()
		select {
		case n := <-resynced:
			if n != want {
				t.Fatalf("resync saw %d contacts, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no resync after login")
		}
		r.sync()
	}
	wait(2)
	if got := r.eng.Snapshot().Decisions; got[DecisionLearned]+got[DecisionFlagged] != 0 {
		t.Errorf("in-country contacts examined: %v", got)
	}

	// AMI goes down; meanwhile the push server and a stranger register.
	mu.Lock()
	contacts = append(contacts, pushC, stranger)
	mu.Unlock()
	srv.Restart()
	wait(4)

	if !r.allowed("203.0.113.31") {
		t.Fatal("push server that registered while AMI was down not learned from the resync")
	}
	var learned *AllowRecord
	for _, a := range r.eng.Allows(r.clock.Now()) {
		if a.Prefix == netip.MustParsePrefix("203.0.113.31/32") {
			learned = &a
		}
	}
	if learned == nil || learned.Kind != AllowLearned || learned.Push == nil || learned.Push.How != state.HowUserAgent ||
		learned.Push.UserAgent != "Bria Push Service" || learned.Push.Account != pushC.Endpoint {
		t.Errorf("learned allow %+v", learned)
	}
	if r.allowed("203.0.113.61") {
		t.Error("a foreign contact that is no push server was learned")
	}
	flags, err := r.store.Flags(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	flagged := map[netip.Addr]bool{}
	for _, f := range flags {
		flagged[f.Addr] = true
	}
	if !flagged[netip.MustParseAddr("203.0.113.61")] {
		t.Error("foreign non-push contact not flagged")
	}
	for _, a := range []string{"198.51.100.21", "198.51.100.22", "203.0.113.31"} {
		if flagged[netip.MustParseAddr(a)] {
			t.Errorf("%s flagged", a)
		}
	}

	// A third login changes nothing: no re-flag, no new learning.
	before := r.eng.Snapshot().Decisions
	srv.Restart()
	wait(4)
	after := r.eng.Snapshot().Decisions
	if after[DecisionFlagged] != before[DecisionFlagged] || after[DecisionLearned] != before[DecisionLearned] {
		t.Errorf("decisions after a repeated resync: %v, before %v", after, before)
	}
}

// Hostile contacts: unparsable or zoned addresses and empty endpoints are
// skipped; nothing panics, nothing is learned.
func TestResyncHostileContacts(t *testing.T) {
	r := newRig(t, rigOpt{})
	r.eng.ResyncContacts(context.Background(), []ami.Contact{
		{Endpoint: "1001", ViaAddr: "not-an-address", UserAgent: "Bria Push Service"},
		{Endpoint: "1001", ViaAddr: "fe80::1%eth0", UserAgent: "Bria Push Service"},
		{Endpoint: "", ViaAddr: "203.0.113.70", UserAgent: "Bria Push Service"},
		{Endpoint: "1001", ViaAddr: "[2001:db8::70]", UserAgent: "Bria Push\r\nEvil: 1"},
	})
	r.sync()
	if r.allowed("203.0.113.70") {
		t.Error("contact without endpoint learned")
	}
	if !r.allowed("2001:db8::70") {
		t.Error("bracketed IPv6 Via address not understood")
	}
	for _, a := range r.eng.Allows(r.clock.Now()) {
		if a.Push != nil && strings.ContainsAny(a.Push.UserAgent, "\r\n") {
			t.Errorf("unsanitized UA kept: %q", a.Push.UserAgent)
		}
	}
}
