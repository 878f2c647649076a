package ami_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// clData reads a file of the shared Asterisk recordings
// (../shared/testdata/asterisk beside the directory holding go.mod).
func clData(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(testpath.Shared(t, "asterisk", name))
	if err != nil {
		t.Fatalf("recorded Asterisk data missing (expected ../shared/testdata beside the repo): %v", err)
	}
	return b
}

// clEventsPart returns the recorded stream from its first event on (the
// banner and the Login response come from the fake server itself).
func clEventsPart(t testing.TB, raw []byte) []byte {
	t.Helper()
	i := bytes.Index(raw, []byte("Event: "))
	if i < 0 {
		t.Fatal("no event in the recording")
	}
	return raw[i:]
}

func clParseAll(t testing.TB, raw []byte) []ami.Message {
	t.Helper()
	rd := ami.NewReader(bytes.NewReader(raw), ami.ReaderOptions{})
	var out []ami.Message
	for {
		m, err := rd.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
}

// syncBuf collects log output from several goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// harness runs a client against srv and collects what it delivers.
type harness struct {
	t        *testing.T
	c        *ami.Client
	events   chan ami.Message
	connects chan struct{}
	logs     *syncBuf
	cancel   context.CancelFunc
	done     chan error
}

func startClient(t *testing.T, srv *amitest.Server, mod func(*ami.ClientConfig)) *harness {
	t.Helper()
	h := &harness{t: t, events: make(chan ami.Message, 4096), connects: make(chan struct{}, 64),
		logs: &syncBuf{}, done: make(chan error, 1)}
	cfg := ami.ClientConfig{
		Address: srv.Addr(), Username: "sentry", Secret: "sentry-secret", Events: "security,system",
		PingInterval: time.Hour, Timeout: 2 * time.Second, ReconnectMax: 20 * time.Millisecond,
		Logger:    slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnMessage: func(m ami.Message) { h.events <- m },
		OnConnect: func(context.Context, *ami.Client) error { h.connects <- struct{}{}; return nil },
	}
	if mod != nil {
		mod(&cfg)
	}
	h.c = ami.NewClient(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-h.done
		for _, secret := range []string{"sentry-secret", cfg.Secret} {
			if secret != "" && strings.Contains(h.logs.String(), secret) {
				t.Errorf("the secret appears in the log:\n%s", h.logs)
			}
		}
	})
	return h
}

func (h *harness) waitConnect() {
	h.t.Helper()
	select {
	case <-h.connects:
	case err := <-h.done:
		h.t.Fatalf("Run returned before connecting: %v", err)
	}
}

// next returns the next delivered event other than FullyBooted.
func (h *harness) next() ami.Message {
	h.t.Helper()
	for {
		m := <-h.events
		if m.Get("Event") != "FullyBooted" {
			return m
		}
	}
}

func ev(name, marker string) []byte {
	return []byte("Event: " + name + "\r\nPrivilege: system,all\r\nMarker: " + marker + "\r\n\r\n")
}

func TestClientWrongSecret(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.Secret = "wrong-secret" })
	err := <-h.done
	h.done <- err // for the cleanup
	if !errors.Is(err, ami.ErrAuth) {
		t.Fatalf("Run = %v, want ErrAuth", err)
	}
	want := "ami: login as sentry@" + srv.Addr() + " refused: Authentication failed"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "permit=") {
		t.Errorf("error %q lacks %q and the hint", err, want)
	}
	if n := srv.FailedLogins(); n != 1 {
		t.Errorf("%d login attempts, want exactly 1 (no retry loop on bad credentials); log:\n%s", n, h.logs)
	}
	if h.c.Connected() {
		t.Error("Connected after a refused login")
	}
}

func TestClientMD5Login(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.MD5 = true })
	h.waitConnect()
	ch, _ := srv.WaitRequest("Challenge")
	if ch.Get("AuthType") != "MD5" {
		t.Errorf("Challenge AuthType = %q", ch.Get("AuthType"))
	}
	login, _ := srv.WaitRequest("Login")
	// The key recorded from a real Asterisk 22 for challenge 642625458 and
	// secret sentry-secret (ami-md5-login.raw).
	rec := clData(t, "ami-md5-login.raw")
	if !bytes.Contains(rec, []byte("Key: "+login.Get("Key")+"\r\n")) {
		t.Errorf("Key %q is not the one Asterisk accepted in ami-md5-login.raw", login.Get("Key"))
	}
	if login.Has("Secret") || login.Get("AuthType") != "MD5" || login.Get("Events") != "security,system" {
		t.Errorf("MD5 login request wrong: %+v", login.Headers)
	}
	if !h.c.Connected() {
		t.Error("not Connected after MD5 login")
	}
}

func TestClientMD5WrongSecret(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.MD5 = true; c.Secret = "nope" })
	err := <-h.done
	h.done <- err
	if !errors.Is(err, ami.ErrAuth) || srv.FailedLogins() != 1 {
		t.Fatalf("Run = %v after %d attempts, want ErrAuth after 1; log:\n%s", err, srv.FailedLogins(), h.logs)
	}
}

func TestClientPlainLoginBytes(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.Events = "on" })
	h.waitConnect()
	login, _ := srv.WaitRequest("Login")
	// Same headers in the same order as the recorded monitoring login, the
	// ActionID aside.
	want := clParseAll(t, clData(t, "ami-sentry-login-request.raw"))[0]
	if len(login.Headers) != len(want.Headers) {
		t.Fatalf("login %+v, want %+v", login.Headers, want.Headers)
	}
	for i := range want.Headers {
		if want.Headers[i].Key != login.Headers[i].Key || (want.Headers[i].Key != "ActionID" && want.Headers[i] != login.Headers[i]) {
			t.Errorf("header %d = %v, want %v", i, login.Headers[i], want.Headers[i])
		}
	}
}

func TestClientCloseMidMessage(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, nil)
	h.waitConnect()
	srv.Send(ev("TestEvent", "A"))
	if m := h.next(); m.Get("Marker") != "A" {
		t.Fatalf("got %v", m.Headers)
	}
	full := ev("TestEvent", "B")
	srv.Cut(full[:len(full)-6]) // dies inside the message: no closing blank line
	h.waitConnect()             // reconnected
	srv.Send(ev("TestEvent", "C"))
	if m := h.next(); m.Get("Marker") != "C" {
		t.Fatalf("after the cut got %v, want C (the half message must not be delivered)", m.Headers)
	}
	if srv.Logins() != 2 {
		t.Errorf("%d logins, want 2", srv.Logins())
	}
}

func TestClientOneBytePerWrite(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{OneBytePerWrite: true})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.MD5 = true })
	h.waitConnect()
	if m := <-h.events; m.Get("Event") != "FullyBooted" {
		t.Fatalf("first event %v, want the server's FullyBooted", m.Headers)
	}
	raw := clEventsPart(t, clData(t, "ami-security-session.raw"))
	want := clParseAll(t, raw)
	if len(want) != 189 {
		t.Fatalf("recording has %d events, README says 189", len(want))
	}
	srv.Send(raw)
	for i := range want {
		got := <-h.events
		if got.Received.IsZero() {
			t.Fatalf("event %d: no receive time", i)
		}
		if !reflect.DeepEqual(got.Headers, want[i].Headers) {
			t.Fatalf("event %d:\n got %v\nwant %v", i, got.Headers, want[i].Headers)
		}
	}
}

func TestClientPingUnanswered(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{NoPing: true})
	h := startClient(t, srv, func(c *ami.ClientConfig) {
		c.PingInterval = 10 * time.Millisecond
		c.Timeout = 100 * time.Millisecond
	})
	h.waitConnect()
	h.waitConnect() // a second login: the dead peer was noticed
	if _, ok := srv.WaitRequest("Ping"); !ok {
		t.Fatal("no Ping sent")
	}
	if h.c.Stats().Timeouts == 0 {
		t.Error("no Ping timeout counted")
	}
	if !strings.Contains(h.logs.String(), "Ping unanswered") {
		t.Errorf("the dead peer was not logged:\n%s", h.logs)
	}
	// Once the peer answers again, the connection stays. 30 pings are at
	// least 30 intervals (300 ms) apart, more than Timeout, so a Ping left
	// unanswered from before SetPing has failed by the time l is taken.
	srv.SetPing(true)
	waitPings := func() {
		for p := countAction(srv, "Ping"); countAction(srv, "Ping") < p+30; {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPings()
	before := srv.Logins()
	waitPings()
	if after := srv.Logins(); after != before {
		t.Errorf("reconnected (%d -> %d logins) although Ping was answered", before, after)
	}
}

func countAction(srv *amitest.Server, action string) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Get("Action") == action {
			n++
		}
	}
	return n
}

func TestClientRestartWhileEventsFlow(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, nil)
	h.waitConnect()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			srv.Send(ev("TestEvent", fmt.Sprint(i)))
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	h.next()
	srv.Restart()
	h.waitConnect() // OnConnect ran again
	// Events flowing after the restart reach the consumer.
	srv.Send(ev("AfterRestart", "Z"))
	for {
		if m := h.next(); m.Get("Event") == "AfterRestart" {
			break
		}
	}
	if srv.Logins() < 2 {
		t.Errorf("%d logins, want 2", srv.Logins())
	}
	if !strings.Contains(h.logs.String(), "retrying") {
		t.Errorf("the reconnect was not logged:\n%s", h.logs)
	}
}

func TestClientActionTimeoutNoLeak(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{Swallow: []string{"CoreStatus"}})
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.Timeout = 100 * time.Millisecond })
	h.waitConnect()
	// Warm up: one answered action, so lazily started goroutines exist.
	if _, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "Ping"}}}); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	for range 5 {
		_, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "CoreStatus"}}})
		if !errors.Is(err, ami.ErrTimeout) {
			t.Fatalf("Action = %v, want ErrTimeout", err)
		}
	}
	settle(t, base)
	// The connection is still usable.
	r, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "Ping"}}})
	if err != nil || r.Get("Ping") != "Pong" {
		t.Fatalf("Ping after timeouts: %v %v", r.Headers, err)
	}
}

// settle waits until the goroutine count is back to base; it fails only if
// it never gets there (a leak), however long the machine takes.
func settle(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines %d > %d: leak\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientActionsInFlight(t *testing.T) {
	const n = 4
	var mu sync.Mutex
	var held []ami.Message
	srv := amitest.NewServer(t, amitest.Options{
		// Answers Echo only once n are in flight, in reverse order.
		Handler: func(c *amitest.Conn, req ami.Message) bool {
			if req.Get("Action") != "Echo" {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			held = append(held, req)
			if len(held) == n {
				for i := n - 1; i >= 0; i-- {
					c.Write([]byte("Response: Success\r\nActionID: " + held[i].Get("ActionID") + "\r\nEcho: " + held[i].Get("Value") + "\r\n\r\n"))
				}
			}
			return true
		},
	})
	h := startClient(t, srv, nil)
	h.waitConnect()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			v := fmt.Sprint("v", i)
			r, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "Echo"}, {"Value", v}}})
			if err != nil {
				errs <- err
			} else if r.Get("Echo") != v {
				errs <- fmt.Errorf("action %s got response %q", v, r.Get("Echo"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClientPJSIPShowContacts(t *testing.T) {
	var want []ami.Contact
	for _, m := range clParseAll(t, clEventsPart(t, clData(t, "ami-action-pjsipshowcontacts.raw"))) {
		if m.Get("Event") == "ContactList" {
			c, err := ami.ParseContact(&m)
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, c)
		}
	}
	if len(want) != 3 {
		t.Fatalf("recording has %d contacts, want 3", len(want))
	}
	srv := amitest.NewServer(t, amitest.Options{Contacts: want})
	h := startClient(t, srv, nil)
	h.waitConnect()
	got, err := h.c.PJSIPShowContacts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("contacts:\n got %+v\nwant %+v", got, want)
	}
	if via, ok := got[2].Via(); !ok || via.String() != "127.0.0.22:5063" {
		t.Errorf("Via = %v %v", via, ok)
	}
	// The list items went to the caller, not to OnMessage.
	srv.Send(ev("Marker", "x"))
	if m := h.next(); m.Get("Event") != "Marker" {
		t.Errorf("a list item leaked to OnMessage: %v", m.Headers)
	}
	// An action refused by Asterisk is an *ActionError with the response.
	r, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "NoSuchAction"}}})
	var ae *ami.ActionError
	if !errors.As(err, &ae) || !strings.HasPrefix(ae.Message, "Invalid/unknown command") || r.Get("Response") != "Error" {
		t.Errorf("unknown action: %v, %v", r.Headers, err)
	}
}

func TestClientCancelSendsLogoff(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	base := runtime.NumGoroutine()
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.PingInterval = 5 * time.Millisecond })
	h.waitConnect()
	h.cancel()
	err := <-h.done
	h.done <- err
	if err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	if _, ok := srv.WaitRequest("Logoff"); !ok {
		t.Fatal("no Logoff sent")
	}
	if h.c.Connected() {
		t.Error("Connected after Run returned")
	}
	if _, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "Ping"}}}); !errors.Is(err, ami.ErrClosed) {
		t.Errorf("Action after Run = %v, want ErrClosed", err)
	}
	// Reader, keepalive, dispatcher and the server's side are all gone.
	settle(t, base)
}

func TestClientSkipsMalformedAndGoesOn(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	h := startClient(t, srv, nil)
	h.waitConnect()
	srv.Send([]byte("Event: Broken\r\nthis line has no colon-space\r\n\r\n"))
	srv.Send(ev("TestEvent", "after"))
	if m := h.next(); m.Get("Marker") != "after" {
		t.Fatalf("got %v", m.Headers)
	}
	if st := h.c.Stats(); st.Malformed != 1 || st.Logins != 1 {
		t.Errorf("stats %+v: want 1 malformed message counted on the same connection", st)
	}
}

func TestClientUnreachableRetries(t *testing.T) {
	// A port with nothing listening: bind, note the address, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logs := &syncBuf{}
	c := ami.NewClient(ami.ClientConfig{Address: addr, Username: "sentry", Secret: "sentry-secret",
		Timeout: time.Second, ReconnectMax: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for strings.Count(logs.String(), "retrying") < 3 {
		select {
		case err := <-done:
			t.Fatalf("Run gave up on an unreachable AMI: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v", err)
	}
	out := logs.String()
	if !strings.Contains(out, "attempt=3") || !strings.Contains(out, "connection refused") || strings.Contains(out, "sentry-secret") {
		t.Errorf("retries not logged as expected:\n%s", out)
	}
}

func TestClientSlowConsumerDoesNotBlockReader(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	release := make(chan struct{})
	var once sync.Once
	h := startClient(t, srv, func(c *ami.ClientConfig) {
		c.QueueSize = 4
		c.OnMessage = func(ami.Message) { <-release } // a consumer that hangs
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	h.waitConnect()
	for i := range 50 {
		srv.Send(ev("TestEvent", fmt.Sprint(i)))
	}
	// The reader still reads: an action sent after the flood is answered.
	r, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "Ping"}}})
	if err != nil || r.Get("Ping") != "Pong" {
		t.Fatalf("Ping behind a stuck consumer: %v %v", r.Headers, err)
	}
	st := h.c.Stats()
	// 51 events arrived (FullyBooted + 50); at most QueueSize+1 are held.
	if st.Events+st.EventsDropped != 51 || st.EventsDropped < 51-5 {
		t.Errorf("stats %+v: want 51 events, all but at most 5 dropped", st)
	}
	once.Do(func() { close(release) })
}

func TestClientTLS(t *testing.T) {
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS() // borrow its certificate for 127.0.0.1
	tlsCfg := hs.TLS.Clone()
	cert := hs.Certificate()
	hs.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := amitest.NewServer(t, amitest.Options{TLS: tlsCfg})
	tc, err := ami.TLSConfig(ca, "example.com")
	if err != nil {
		t.Fatal(err)
	}
	h := startClient(t, srv, func(c *ami.ClientConfig) { c.TLS = tc })
	h.waitConnect()
	srv.Send(ev("OverTLS", "1"))
	if m := h.next(); m.Get("Event") != "OverTLS" {
		t.Fatalf("got %v", m.Headers)
	}

	// A server the CA does not vouch for is refused (and retried, not trusted).
	other := amitest.NewServer(t, amitest.Options{TLS: tlsCfg})
	tc2, err := ami.TLSConfig(ca, "wrong.example")
	if err != nil {
		t.Fatal(err)
	}
	h2 := startClient(t, other, func(c *ami.ClientConfig) { c.TLS = tc2 })
	for !strings.Contains(h2.logs.String(), "TLS handshake") {
		time.Sleep(5 * time.Millisecond)
	}
	if other.Logins() != 0 {
		t.Error("logged in to a server with a certificate for another name")
	}
	if _, err := ami.TLSConfig(filepath.Join(t.TempDir(), "none.pem"), ""); err == nil {
		t.Error("TLSConfig accepted a missing CA file")
	}
}

// OnConnect's ctx ends with its connection, so a resync stuck on a dead
// connection does not hold the client; a failing hook is logged and the
// session stays up.
func TestClientOnConnectContextAndError(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{})
	ended := make(chan struct{}, 4)
	first := true
	h := startClient(t, srv, func(c *ami.ClientConfig) {
		c.OnConnect = func(ctx context.Context, _ *ami.Client) error {
			if first {
				first = false
				<-ctx.Done() // blocks until the connection goes
				ended <- struct{}{}
				return ctx.Err()
			}
			return errors.New("resync refused")
		}
	})
	srv.WaitLogins(1)
	srv.Restart()
	<-ended
	srv.WaitLogins(2)
	for !strings.Contains(h.logs.String(), "resync refused") {
		time.Sleep(5 * time.Millisecond)
	}
	// Still connected and usable after the failed hook.
	if r, err := h.c.Action(context.Background(), ami.Message{Headers: []ami.Header{{"Action", "Ping"}}}); err != nil || r.Get("Ping") != "Pong" {
		t.Fatalf("after a failing OnConnect: %v %v", r.Headers, err)
	}
	if srv.Logins() != 2 {
		t.Errorf("%d logins, want 2 (a failing hook must not cause reconnects)", srv.Logins())
	}
}
