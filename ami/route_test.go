package ami_test

import (
	"context"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
)

// Issue 9: the client hands parsed security events to their consumer; the
// code that wires them is not on the path. Security events reach the
// subscriber (and not OnMessage), in order; other events reach OnMessage;
// every type is counted through OnEventType with a bounded label.
func TestClientHandsTypedSecurityEventsToTheSubscriber(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	got := make(chan ami.SecurityEvent, 1024)
	labels := make(chan string, 4096)
	h := startClient(t, srv, func(c *ami.ClientConfig) {
		c.OnSecurityEvent = func(_ context.Context, ev ami.SecurityEvent) { got <- ev }
		c.OnEventType = func(l string) { labels <- l }
	})
	h.waitConnect()
	stream := clEventsPart(t, clData(t, "ami-s2-wrong-password.raw"))
	var want []ami.SecurityEvent
	for _, m := range clParseAll(t, stream) {
		if ami.IsSecurityEvent(&m) {
			if ev, err := ami.ParseSecurityEvent(&m); err == nil {
				want = append(want, ev)
			}
		}
	}
	if len(want) == 0 {
		t.Fatal("the recording holds no security event")
	}
	srv.Send(stream)
	srv.Send(ev("ContactStatus", "m1"))
	srv.Send([]byte("Event: x\",RemoteAddress=\"IPV4/UDP/6.6.6.6/50\r\n\r\n"))
	for i, w := range want {
		select {
		case ev := <-got:
			if ev.Type != w.Type || ev.Remote != w.Remote || ev.AccountID != w.AccountID {
				t.Fatalf("event %d = %s from %v (%s), want %s from %v (%s)", i, ev.Type, ev.Remote, ev.AccountID, w.Type, w.Remote, w.AccountID)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d of %d security events reached the subscriber", i, len(want))
		}
	}
	// OnMessage sees the other events only.
	for {
		m := h.next()
		if ami.IsSecurityEvent(&m) {
			t.Fatalf("a security event reached OnMessage: %v", m.Headers)
		}
		if m.Get("Marker") == "m1" {
			break
		}
	}
	deadline := time.After(5 * time.Second)
	seen := map[string]bool{}
	for !seen["other"] {
		select {
		case l := <-labels:
			seen[l] = true
		case <-deadline:
			t.Fatalf("labels seen %v, want the injected type counted as other", seen)
		}
	}
	if !seen[want[0].Type] || !seen["ContactStatus"] {
		t.Errorf("labels seen %v", seen)
	}
	if st := h.c.Stats(); st.SecurityEvents < uint64(len(want)) {
		t.Errorf("Stats.SecurityEvents = %d, want %d", st.SecurityEvents, len(want))
	}
}

// A replay takes the same path: Feed routes one message as the dispatcher does.
func TestFeedRoutesLikeTheDispatcher(t *testing.T) {
	c := ami.NewClient(ami.ClientConfig{})
	var n int
	c.Subscribe(func(context.Context, ami.SecurityEvent) { n++ }, nil)
	for _, m := range clParseAll(t, clEventsPart(t, clData(t, "ami-s2-wrong-password.raw"))) {
		c.Feed(context.Background(), m)
	}
	st := c.Stats()
	if n == 0 || uint64(n) != st.SecurityEvents {
		t.Errorf("subscriber got %d events, Stats.SecurityEvents = %d", n, st.SecurityEvents)
	}
}

// DownFor is 0 while a session is up and counts from its end after.
func TestClientDownFor(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.ReconnectMax = time.Hour }) // no quick reconnect
	h.waitConnect()
	if d := h.c.DownFor(); d != 0 {
		t.Fatalf("DownFor while logged in = %s", d)
	}
	srv.Restart() // drops the connection
	deadline := time.Now().Add(5 * time.Second)
	for h.c.Connected() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	if d := h.c.DownFor(); d < 20*time.Millisecond || d > 5*time.Second {
		t.Errorf("DownFor after the connection dropped = %s", d)
	}
}
