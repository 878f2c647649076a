package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// fakeHandler records what the server asked of it.
type fakeHandler struct {
	mu      sync.Mutex
	calls   []string
	bans    map[netip.Addr]BanRecord
	block   chan struct{} // Ban waits on it (or ctx) when set
	listErr error         // Bans fails with it when set
}

func newFake() *fakeHandler { return &fakeHandler{bans: map[netip.Addr]BanRecord{}} }

func (f *fakeHandler) record(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

func (f *fakeHandler) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeHandler) Ban(ctx context.Context, a netip.Addr, d time.Duration, reason string, uid uint32) (BanRecord, error) {
	f.record("ban %s %v %q uid=%d", a, d, reason, uid)
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return BanRecord{}, ctx.Err()
		}
	}
	if a.IsLoopback() {
		return BanRecord{}, fmt.Errorf("%w: never ban %s: loopback", ErrRefused, a)
	}
	rec := BanRecord{Addr: a, Reason: reason, Origin: "manual", Offence: 1, UID: &uid}
	if d > 0 {
		rec.Until = time.Unix(1_900_000_000, 0).UTC()
	}
	f.mu.Lock()
	f.bans[a] = rec
	f.mu.Unlock()
	return rec, nil
}

func (f *fakeHandler) Unban(_ context.Context, a netip.Addr, uid uint32) error {
	f.record("unban %s uid=%d", a, uid)
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.bans[a]; !ok {
		return fmt.Errorf("%w: %s is not banned", ErrNotBanned, a)
	}
	delete(f.bans, a)
	return nil
}

func (f *fakeHandler) Allow(_ context.Context, p netip.Prefix, d time.Duration, comment string, uid uint32) (AllowRecord, error) {
	f.record("allow %s %v %q uid=%d", p, d, comment, uid)
	return AllowRecord{Prefix: p, Kind: AllowManual, Comment: comment, UID: &uid}, nil
}

func (f *fakeHandler) Disallow(_ context.Context, p netip.Prefix, uid uint32) error {
	f.record("disallow %s uid=%d", p, uid)
	return fmt.Errorf("%w: %s has no allow entry", ErrNotAllowed, p)
}

func (f *fakeHandler) Bans(_ context.Context, _ time.Time, each func(BanRecord) error) error {
	f.record("bans")
	if f.listErr != nil {
		return f.listErr
	}
	f.mu.Lock()
	var out []BanRecord
	for _, b := range f.bans {
		out = append(out, b)
	}
	f.mu.Unlock()
	for _, b := range out {
		if err := each(b); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeHandler) Allows(_ context.Context, _ time.Time, each func(AllowRecord) error) error {
	f.record("allows")
	for _, a := range []AllowRecord{
		{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Kind: AllowStatic},
		{Prefix: netip.MustParsePrefix("203.0.113.31/32"), Kind: AllowLearned, Evidence: &Evidence{How: "user_agent", UserAgent: "Bria Push Service"}},
	} {
		if err := each(a); err != nil {
			return err
		}
	}
	return nil
}

// collect gathers a streamed listing.
func collect[T any](list func(func(T) error) error) ([]T, error) {
	var out []T
	err := list(func(v T) error { out = append(out, v); return nil })
	return out, err
}

// selfAccess lets the test's own process in whether or not it runs as root.
func selfAccess() Access { return Access{GroupSet: true, Group: uint32(os.Getgid())} }

func startServer(t *testing.T, h Handler, mod func(*ServerOptions)) (*Server, *Client) {
	t.Helper()
	o := ServerOptions{Path: filepath.Join(t.TempDir(), "run", "control.sock"), Handler: h, Access: selfAccess()}
	if mod != nil {
		mod(&o)
	}
	s, err := Listen(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, &Client{Path: s.Path(), Timeout: 10 * time.Second}
}

func TestRoundTrip(t *testing.T) {
	h := newFake()
	_, c := startServer(t, h, nil)
	ctx := context.Background()
	uid := uint32(os.Getuid())

	rec, err := c.Ban(ctx, netip.MustParseAddr("203.0.113.7"), time.Hour, "dictionary attack", 999)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Addr != netip.MustParseAddr("203.0.113.7") || rec.Origin != "manual" || rec.UID == nil || *rec.UID != uid {
		t.Errorf("ban record %+v", rec)
	}
	if _, err := c.Ban(ctx, netip.MustParseAddr("203.0.113.8"), DefaultDuration, "", 0); err != nil {
		t.Fatal(err)
	}
	_, err = c.Ban(ctx, netip.MustParseAddr("127.0.0.1"), 0, "", 0)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("ban 127.0.0.1: %v, want ErrRefused with the reason", err)
	}
	bans, err := collect(func(each func(BanRecord) error) error { return c.Bans(ctx, time.Time{}, each) })
	if err != nil || len(bans) != 2 {
		t.Errorf("bans = %+v, %v", bans, err)
	}
	if err := c.Unban(ctx, netip.MustParseAddr("203.0.113.7"), 0); err != nil {
		t.Errorf("unban: %v", err)
	}
	if err := c.Unban(ctx, netip.MustParseAddr("203.0.113.7"), 0); !errors.Is(err, ErrNotBanned) {
		t.Errorf("second unban: %v, want ErrNotBanned", err)
	}
	arec, err := c.Allow(ctx, netip.MustParsePrefix("198.51.100.0/24"), 12*time.Hour, "office", 0)
	if err != nil || arec.Kind != AllowManual || arec.Comment != "office" {
		t.Errorf("allow = %+v, %v", arec, err)
	}
	if err := c.Disallow(ctx, netip.MustParsePrefix("198.51.100.0/24"), 0); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("disallow: %v, want ErrNotAllowed", err)
	}
	allows, err := collect(func(each func(AllowRecord) error) error { return c.Allows(ctx, time.Time{}, each) })
	if err != nil || len(allows) != 2 || allows[1].Evidence == nil || allows[1].Evidence.UserAgent != "Bria Push Service" {
		t.Errorf("allows = %+v, %v", allows, err)
	}
	want := []string{
		fmt.Sprintf("ban 203.0.113.7 1h0m0s %q uid=%d", "dictionary attack", uid),
		fmt.Sprintf("ban 203.0.113.8 -1ns \"\" uid=%d", uid),
		fmt.Sprintf("ban 127.0.0.1 0s \"\" uid=%d", uid),
		"bans",
		fmt.Sprintf("unban 203.0.113.7 uid=%d", uid),
		fmt.Sprintf("unban 203.0.113.7 uid=%d", uid),
		fmt.Sprintf("allow 198.51.100.0/24 12h0m0s \"office\" uid=%d", uid),
		fmt.Sprintf("disallow 198.51.100.0/24 uid=%d", uid),
		"allows",
	}
	if got := h.Calls(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("handler calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// rawExchange writes b on a fresh connection and returns the first answer line.
func rawExchange(t *testing.T, path string, b []byte) string {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(b); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", b, err)
	}
	return line
}

func TestBadRequestsChangeNothing(t *testing.T) {
	h := newFake()
	s, _ := startServer(t, h, nil)
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"oversized", append([]byte(`{"v":1,"op":"ban","target":"203.0.113.9","text":"`+strings.Repeat("x", 8<<10)), '"', '}', '\n'), `"code":"protocol"`},
		{"oversized without newline", []byte(strings.Repeat("A", MaxRequestBytes+10)), `"code":"protocol"`},
		{"garbage", []byte("\x00\x01hello\xff\n"), `"code":"protocol"`},
		{"two values", []byte(`{"v":1,"op":"bans"} {"v":1,"op":"bans"}` + "\n"), `"code":"protocol"`},
		{"unknown field", []byte(`{"v":1,"op":"ban","target":"203.0.113.9","uid":0}` + "\n"), `"code":"protocol"`},
		{"no version", []byte(`{"op":"ban","target":"203.0.113.9"}` + "\n"), `"code":"protocol"`},
		{"future version", []byte(`{"v":2,"op":"ban","target":"203.0.113.9"}` + "\n"), `"code":"protocol"`},
		{"unknown op", []byte(`{"v":1,"op":"flush"}` + "\n"), `"code":"invalid"`},
		{"network as ban target", []byte(`{"v":1,"op":"ban","target":"203.0.113.0/24"}` + "\n"), `"code":"invalid"`},
		{"bad address", []byte(`{"v":1,"op":"ban","target":"203.0.113.300"}` + "\n"), `"code":"invalid"`},
		{"zone", []byte(`{"v":1,"op":"unban","target":"fe80::1%eth0"}` + "\n"), `"code":"invalid"`},
		{"negative for", []byte(`{"v":1,"op":"ban","target":"203.0.113.9","for":"-1h"}` + "\n"), `"code":"invalid"`},
		{"control char in reason", []byte(`{"v":1,"op":"ban","target":"203.0.113.9","text":"a\nb"}` + "\n"), `"code":"invalid"`},
		{"long comment", []byte(`{"v":1,"op":"allow","target":"203.0.113.0/24","text":"` + strings.Repeat("c", MaxTextBytes+1) + `"}` + "\n"), `"code":"invalid"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := rawExchange(t, s.Path(), tc.in)
			if !strings.Contains(got, tc.want) || strings.Contains(got, `"ok":true`) {
				t.Errorf("answer %q, want %s", got, tc.want)
			}
			if len(got) > 600 {
				t.Errorf("answer is %d bytes: the request was echoed", len(got))
			}
		})
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("the handler was called for bad requests: %q", calls)
	}
}

// A peer that connects and says nothing is dropped after the read timeout,
// and the server keeps serving others meanwhile and afterwards.
func TestSilentPeerTimesOut(t *testing.T) {
	h := newFake()
	s, c := startServer(t, h, func(o *ServerOptions) { o.ReadTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := c.Bans(context.Background(), time.Time{}, func(BanRecord) error { return nil }); err != nil {
		t.Errorf("a second client while the first is silent: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the silent connection was not closed by the server: %v", err)
	}
	if !strings.Contains(string(b), `"code":"protocol"`) || !strings.Contains(string(b), "no complete request line within 300ms") {
		t.Errorf("the answer to a silent peer: %q", b)
	}
	if err := c.Bans(context.Background(), time.Time{}, func(BanRecord) error { return nil }); err != nil {
		t.Errorf("after the timeout: %v", err)
	}
}

// A half-written request (no newline) times out with a protocol error.
func TestPartialRequestTimesOut(t *testing.T) {
	s, _ := startServer(t, newFake(), func(o *ServerOptions) { o.ReadTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(`{"v":1,"op":"ban","tar`))
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(line, `"code":"protocol"`) {
		t.Errorf("answer %q, %v; want a protocol error after the read timeout", line, err)
	}
}

// The client's context bounds the exchange; the handler sees its context end
// when the server's handle timeout passes.
func TestClientContextAndHandleTimeout(t *testing.T) {
	h := newFake()
	h.block = make(chan struct{})
	_, c := startServer(t, h, func(o *ServerOptions) { o.HandleTimeout = 500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Ban(ctx, netip.MustParseAddr("203.0.113.9"), time.Hour, "", 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ban with a 100 ms context against a stuck handler: %v, want context.DeadlineExceeded", err)
	}
	// Without a client deadline, the server's handle timeout answers.
	_, err = c.Ban(context.Background(), netip.MustParseAddr("203.0.113.10"), time.Hour, "", 0)
	if err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("ban against a stuck handler: %v, want the server's handle timeout", err)
	}
	close(h.block)
}

func TestTooManyConnections(t *testing.T) {
	s, c := startServer(t, newFake(), func(o *ServerOptions) { o.MaxConns = 1; o.ReadTimeout = 5 * time.Second })
	hold, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	time.Sleep(100 * time.Millisecond) // let the server take the slot
	err = c.Bans(context.Background(), time.Time{}, func(BanRecord) error { return nil })
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("a second connection over MaxConns: %v, want ErrUnavailable", err)
	}
}

func TestListenSocketFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "sipsentry")
	path := filepath.Join(dir, "control.sock")
	s, err := Listen(ServerOptions{Path: path, Handler: newFake()})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", st.Mode())
	}
	if dst, err := os.Stat(dir); err != nil || dst.Mode().Perm() != 0o755 {
		t.Errorf("parent dir %v, %v: want 0755", dst.Mode(), err)
	}
	// A live server keeps its socket.
	if _, err := Listen(ServerOptions{Path: path, Handler: newFake()}); !errors.Is(err, ErrInUse) {
		t.Errorf("second Listen on a live socket: %v, want ErrInUse", err)
	}
	go s.Serve(context.Background())
	s.Close()
	// Closing removes the file; no daemon then means ErrNoDaemon.
	time.Sleep(50 * time.Millisecond)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close: %v", err)
	}
	if err := (&Client{Path: path}).Ping(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Ping without a daemon: %v, want ErrNoDaemon", err)
	}

	// A stale socket file (a daemon killed -9) is replaced; its connect is refused meanwhile.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if err := (&Client{Path: path}).Ping(context.Background()); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("Ping on a stale socket: %v, want ErrNoDaemon", err)
	}
	s, err = Listen(ServerOptions{Path: path, Handler: newFake(), Access: Access{GroupSet: true, Group: 4242}})
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	st, _ = os.Stat(path)
	if st.Mode().Perm() != 0o660 {
		t.Errorf("socket mode with control.group: %v, want 0660", st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 && sys.Gid != 4242 {
		t.Errorf("socket group %d, want 4242", sys.Gid)
	}
	s.Close()

	// Anything that is not a socket is left alone.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(ServerOptions{Path: path, Handler: newFake()}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Error("the regular file was changed")
	}
}

func TestAccess(t *testing.T) {
	for _, tc := range []struct {
		a    Access
		p    Peer
		want bool
	}{
		{Access{}, Peer{UID: 0, GID: 0}, true},
		{Access{}, Peer{UID: 1000, GID: 0}, false}, // gid 0 without a group set grants nothing
		{Access{GroupSet: true, Group: 0}, Peer{UID: 1000, GID: 1000}, false},
		{Access{GroupSet: true, Group: 120}, Peer{UID: 1000, GID: 120}, true},
		{Access{GroupSet: true, Group: 120}, Peer{UID: 1000, GID: 1000, Groups: []uint32{27, 120}}, true},
		{Access{GroupSet: true, Group: 120}, Peer{UID: 1000, GID: 1000, Groups: []uint32{27}}, false},
		{Access{}, Peer{UID: 65534, GID: 65534, Groups: []uint32{0}}, false},
	} {
		if got := tc.a.allows(tc.p); got != tc.want {
			t.Errorf("%+v allows %+v = %v, want %v", tc.a, tc.p, got, tc.want)
		}
	}
}

// childEnv makes the test binary act as a control client (see TestMain).
const childEnv = "SIPSENTRY_CONTROL_TEST_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		_, err := (&Client{Path: path, Timeout: 10 * time.Second}).Ban(context.Background(), netip.MustParseAddr("203.0.113.77"), time.Hour, "child", 0)
		if err != nil {
			fmt.Println("error:", err)
			if errors.Is(err, ErrUnauthorized) {
				os.Exit(3)
			}
			os.Exit(1)
		}
		fmt.Println("ok")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// The server checks the peer's credentials itself, from the kernel: with the
// socket file opened to everyone (a wrong chmod), uid 65534 is still refused
// and the handler never called, and a member of the configured group (by a
// supplementary group only) is let in with its own uid.
func TestPeerCredentialsFromTheKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// uid 65534 must be able to run the test binary: copy it to a 0755 place.
	dir, err := os.MkdirTemp("", "sipsentry-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	const group = 64123
	h := newFake()
	s, err := Listen(ServerOptions{Path: filepath.Join(dir, "control.sock"), Handler: h, Access: Access{GroupSet: true, Group: group}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	if err := os.Chmod(s.Path(), 0o666); err != nil {
		t.Fatal(err)
	}
	run := func(cred *syscall.Credential) (int, string) {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+s.Path())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(out)
		}
		if err != nil {
			t.Fatalf("running the child: %v", err)
		}
		return 0, string(out)
	}
	code, out := run(&syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534}})
	if code != 3 || !strings.Contains(out, "uid 65534 may not use the control socket") {
		t.Errorf("uid 65534 outside the group: exit %d, %q; want exit 3 (ErrUnauthorized)", code, out)
	}
	if calls := h.Calls(); len(calls) != 0 {
		t.Errorf("the handler ran for an unauthorized peer: %q", calls)
	}
	code, out = run(&syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{group}})
	if code != 0 {
		t.Errorf("uid 65534 in the group: exit %d, %q", code, out)
	}
	if calls := h.Calls(); len(calls) != 1 || !strings.Contains(calls[0], "uid=65534") {
		t.Errorf("handler calls %q, want one ban by uid 65534", calls)
	}
}

// A listing is streamed record by record; a handler that fails before the
// first record answers with its error.
func TestListingStreamsAndFails(t *testing.T) {
	h := newFake()
	_, c := startServer(t, h, nil)
	ctx := context.Background()
	for i := range 300 {
		a := netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})
		if i >= 256 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		}
		if _, err := c.Ban(ctx, a, time.Hour, strings.Repeat("r", 150), 0); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	if err := c.Bans(ctx, time.Time{}, func(BanRecord) error { n++; return nil }); err != nil || n != 300 {
		t.Errorf("listing: %d records, %v; want 300", n, err)
	}
	// The reader stops early: the client returns the reader's error.
	stop := errors.New("enough")
	n = 0
	err := c.Bans(ctx, time.Time{}, func(BanRecord) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("a reader that stops: %v after %d records", err, n)
	}
	h.listErr = fmt.Errorf("%w: the engine is stopping", ErrUnavailable)
	err = c.Bans(ctx, time.Time{}, func(BanRecord) error { return nil })
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "the engine is stopping") {
		t.Errorf("a failing listing: %v", err)
	}
}

// Serve returns promptly at shutdown even with a silent peer connected.
func TestShutdownCutsSilentPeers(t *testing.T) {
	s, err := Listen(ServerOptions{Path: filepath.Join(t.TempDir(), "control.sock"), Handler: newFake(), Access: selfAccess(),
		ReadTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	conn, err := net.Dial("unix", s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	time.Sleep(50 * time.Millisecond) // served, waiting for a request
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Serve still waits for a silent peer after its context ended")
	}
}
