package ami_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
)

// An endless PJSIPShowContacts answer (issue 10: 85 MB -> 2.5 GB in 12 s)
// ends in ErrListTooLong as soon as the cap is passed, counted, with the
// client never holding more items than the cap; the rest of the list is
// dropped, not delivered as events, and the session stays usable.
func TestClientEndlessListEndsInCountedError(t *testing.T) {
	const maxItems = 500
	stop := make(chan struct{})
	var sent atomic.Int64
	srv := amitest.NewServer(t, amitest.Options{Handler: func(c *amitest.Conn, req ami.Message) bool {
		if !strings.EqualFold(req.Get("Action"), "PJSIPShowContacts") {
			return false
		}
		id := req.Get("ActionID")
		go func() {
			c.Write([]byte("Response: Success\r\nActionID: " + id + "\r\nEventList: start\r\nMessage: A listing of Contacts follows\r\n\r\n"))
			for i := 0; ; i++ {
				select {
				case <-stop:
					c.Write([]byte("Event: ContactListComplete\r\nActionID: " + id + "\r\nEventList: Complete\r\nListItems: 0\r\n\r\n"))
					return
				default:
				}
				c.Write(fmt.Appendf(nil, "Event: ContactList\r\nActionID: %s\r\nObjectType: contact\r\nObjectName: 100;@%d\r\nURI: sip:100@203.0.113.7:%d\r\nEndpoint: 100\r\nStatus: Reachable\r\n\r\n", id, i, 1024+i%60000))
				sent.Add(1)
			}
		}()
		return true
	}})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.ListMaxItems = maxItems; c.Timeout = time.Hour })
	h.waitConnect()
	// With an hour's action timeout, the error can only be the cap's.
	cs, err := h.c.PJSIPShowContacts(context.Background())
	if !errors.Is(err, ami.ErrListTooLong) || cs != nil {
		t.Fatalf("PJSIPShowContacts = %d contacts, %v; want ErrListTooLong", len(cs), err)
	}
	// Let the stream run on past the cap, then end it.
	for sent.Load() < 5*maxItems {
		time.Sleep(time.Millisecond)
	}
	close(stop)
	st := h.c.Stats()
	if st.ListOverflows != 1 {
		t.Errorf("ListOverflows = %d, want 1", st.ListOverflows)
	}
	if st.ListItemsPeak > maxItems {
		t.Errorf("the client held %d items of one list, over the cap of %d", st.ListItemsPeak, maxItems)
	}
	// The session is still up and answers; none of the dropped items reached OnMessage.
	if _, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{Key: "Action", Value: "Ping"}}}); err != nil {
		t.Fatalf("Ping after the overflow: %v", err)
	}
	if st := h.c.Stats(); st.ListItemsDropped == 0 {
		t.Error("ListItemsDropped = 0 after the overflow")
	}
	srv.Send(ev("Marker", "after"))
	for {
		m := h.next()
		if m.Get("Event") == "ContactList" || m.Get("Event") == "ContactListComplete" {
			t.Fatalf("a dropped list item reached OnMessage: %v", m.Headers)
		}
		if m.Get("Marker") == "after" {
			break
		}
	}
}

// The byte cap holds too: few items, each large.
func TestClientListByteCap(t *testing.T) {
	big := strings.Repeat("x", 4000)
	srv := amitest.NewServer(t, amitest.Options{Handler: func(c *amitest.Conn, req ami.Message) bool {
		if !strings.EqualFold(req.Get("Action"), "PJSIPShowContacts") {
			return false
		}
		id := req.Get("ActionID")
		var b strings.Builder
		b.WriteString("Response: Success\r\nActionID: " + id + "\r\nEventList: start\r\n\r\n")
		for range 50 {
			b.WriteString("Event: ContactList\r\nActionID: " + id + "\r\nUserAgent: " + big + "\r\n\r\n")
		}
		b.WriteString("Event: ContactListComplete\r\nActionID: " + id + "\r\nEventList: Complete\r\n\r\n")
		c.Write([]byte(b.String()))
		return true
	}})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.ListMaxBytes = 40000 })
	h.waitConnect()
	if _, err := h.c.PJSIPShowContacts(context.Background()); !errors.Is(err, ami.ErrListTooLong) {
		t.Fatalf("PJSIPShowContacts = %v, want ErrListTooLong", err)
	}
	if st := h.c.Stats(); st.ListOverflows != 1 || st.ListItemsPeak >= 10 {
		t.Errorf("stats = %+v: want one overflow with fewer than 10 items held", st)
	}
}

// A PBX with no registered contact answers PJSIPShowContacts with an error
// "No Contacts found" (issue 12): that is an empty list, not a failure.
func TestClientNoContactsFoundIsAnEmptyList(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{Handler: func(c *amitest.Conn, req ami.Message) bool {
		if !strings.EqualFold(req.Get("Action"), "PJSIPShowContacts") {
			return false
		}
		c.Write([]byte("Response: Error\r\nActionID: " + req.Get("ActionID") + "\r\nMessage: No Contacts found\r\n\r\n"))
		return true
	}})
	h := startClient(t, srv, nil)
	h.waitConnect()
	cs, err := h.c.PJSIPShowContacts(context.Background())
	if err != nil || len(cs) != 0 {
		t.Fatalf("PJSIPShowContacts = %v, %v; want an empty list and no error", cs, err)
	}
}
