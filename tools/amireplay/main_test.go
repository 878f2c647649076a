package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

func recording(t *testing.T, name string) string {
	t.Helper()
	return testpath.Shared(t, "asterisk", name)
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func securityEvents(t *testing.T, raw []byte) []ami.SecurityEvent {
	t.Helper()
	rd := ami.NewReader(bytes.NewReader(raw), ami.ReaderOptions{})
	var out []ami.SecurityEvent
	for {
		m, err := rd.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if ami.IsSecurityEvent(&m) {
			ev, _ := ami.ParseSecurityEvent(&m)
			out = append(out, ev)
		}
	}
}

func TestReplayWithAddressMap(t *testing.T) {
	capture := recording(t, "ami-security-session.raw")
	raw, err := os.ReadFile(capture)
	if err != nil {
		t.Fatal(err)
	}
	orig := securityEvents(t, raw)

	ctx, cancel := context.WithCancel(context.Background())
	stdout := &lockedBuf{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-listen", "127.0.0.1:0", "-rate", "0",
			"-map", "127.0.0.11=203.0.113.11", "-map", "::1=2001:db8::1", "-map", "127.0.0.21=198.51.100.21",
			"-contacts", recording(t, "ami-actions.raw"), capture}, stdout, io.Discard)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	var addr string
	for addr == "" {
		if s, ok := strings.CutPrefix(stdout.String(), "amireplay: listening on "); ok && strings.HasSuffix(s, "\n") {
			addr = strings.TrimSpace(s)
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run ended: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}

	events := make(chan ami.Message, 1024)
	connected := make(chan *ami.Client, 1)
	c := ami.NewClient(ami.ClientConfig{Address: addr, Username: "sentry", Secret: "sentry-secret", MD5: true,
		Events: "security,system", OnMessage: func(m ami.Message) { events <- m },
		OnConnect: func(_ context.Context, c *ami.Client) error { connected <- c; return nil }})
	cctx, ccancel := context.WithCancel(ctx)
	defer ccancel()
	go c.Run(cctx)
	<-connected

	var got []ami.SecurityEvent
	for len(got) < len(orig) {
		m := <-events
		if ami.IsSecurityEvent(&m) {
			ev, _ := ami.ParseSecurityEvent(&m)
			got = append(got, ev)
		}
	}
	mapped := 0
	for i, o := range orig {
		g := got[i]
		want := o.Remote.Addr().String()
		switch want {
		case "127.0.0.11":
			want = "203.0.113.11"
		case "::1":
			want = "2001:db8::1"
		case "127.0.0.21":
			want = "198.51.100.21"
		}
		if g.Remote.Addr().String() != want || g.Remote.AddrPort.Port() != o.Remote.AddrPort.Port() ||
			g.Remote.Transport != o.Remote.Transport || g.Type != o.Type || g.SessionID != o.SessionID {
			t.Errorf("event %d: got %v %v %s, want %s:%d from %v", i, g.Type, g.Remote, g.SessionID, want, o.Remote.AddrPort.Port(), o.Remote)
		}
		if want != o.Remote.Addr().String() {
			mapped++
		}
	}
	if mapped < 60 { // s1, s2, s4, s5 from 127.0.0.11 and s8a from ::1
		t.Errorf("only %d events were remapped", mapped)
	}

	cs, err := c.PJSIPShowContacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vias := map[string]bool{}
	for _, ct := range cs {
		v, _ := ct.Via()
		vias[v.String()] = true
		if strings.Contains(ct.URI, "127.0.0.21") {
			t.Errorf("Uri not remapped: %s", ct.URI)
		}
	}
	if len(cs) != 3 || !vias["198.51.100.21:5061"] || !vias["127.0.0.31:5062"] {
		t.Errorf("contacts %+v", cs)
	}
}

func TestRewriteLeavesOtherBytes(t *testing.T) {
	in := []byte("SessionID: 1-1@127.0.0.11\r\nRemoteAddress: IPV4/UDP/127.0.0.11/5070\r\nLocalAddress: IPV4/UDP/127.0.0.1/5060\r\nRemoteAddress: IPV4/UDP/127.0.0.111/1\r\n\r\n")
	m := addrMap{}
	if err := m.Set("127.0.0.11=2001:db8::b"); err != nil {
		t.Fatal(err)
	}
	want := "SessionID: 1-1@127.0.0.11\r\nRemoteAddress: IPV6/UDP/2001:db8::b/5070\r\nLocalAddress: IPV4/UDP/127.0.0.1/5060\r\nRemoteAddress: IPV4/UDP/127.0.0.111/1\r\n\r\n"
	if got := string(rewrite(in, m)); got != want {
		t.Errorf("rewrite:\n got %q\nwant %q", got, want)
	}
	if err := m.Set("nonsense"); err == nil {
		t.Error("bad -map accepted")
	}
}
