package ami

// The client: one long-lived manager session to Asterisk, kept alive.
//
// Contract, in short:
//   - Run owns the connection: dial, banner, login, read, keepalive,
//     reconnect with backoff and jitter until ctx is done, then Logoff.
//   - One reader goroutine per connection reads as fast as the socket
//     delivers. Asterisk drops a manager session that reads slower than its
//     writetimeout (100 ms by default), so events go into a bounded queue
//     drained by a single dispatcher calling OnMessage; a full queue drops
//     (and counts) events instead of stalling the socket.
//   - Action/ListAction may be called from any goroutine, several in flight;
//     responses are matched by ActionID.
//   - Wrong credentials end Run with an error wrapping ErrAuth: retrying a
//     refused login only fills Asterisk's security log.
//   - The secret is never logged, not even the MD5 key derived from it.

import (
	"context"
	"crypto/md5"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrAuth means Asterisk refused the login (bad user, secret, or ACL).
	ErrAuth = errors.New("ami: authentication failed")
	// ErrTimeout means an action got no (complete) response within Timeout.
	ErrTimeout = errors.New("ami: no response in time")
	// ErrClosed means there is no logged-in connection (yet, or any more).
	ErrClosed = errors.New("ami: not connected")
	// ErrListTooLong means a list action's answer passed ListMaxItems or
	// ListMaxBytes: the items were dropped, not kept growing.
	ErrListTooLong = errors.New("ami: list answer over its cap")
)

// Caps on one list action's answer. A PBX holds a few thousand contacts
// (~600 bytes each as ContactList events); a peer that streams an endless
// list must end in an error, never in memory growth until Timeout (an endless
// PJSIPShowContacts grew the daemon from 85 MB to 2.5 GB in 12 s).
const (
	DefaultListMaxItems = 20000
	DefaultListMaxBytes = 16 << 20
)

// AuthError is the refused login; errors.Is(err, ErrAuth) holds.
type AuthError struct {
	User, Address string
	Message       string // Asterisk's Message header, e.g. "Authentication failed"
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("ami: login as %s@%s refused: %s — check [ami] username/secret and manager.conf permit=",
		e.User, e.Address, e.Message)
}

func (e *AuthError) Unwrap() error { return ErrAuth }

// ActionError is a "Response: Error" to an action. Action returns it together
// with the response message.
type ActionError struct {
	Action  string
	Message string // e.g. "Permission denied"
}

func (e *ActionError) Error() string {
	return fmt.Sprintf("ami: action %s refused: %s", e.Action, e.Message)
}

// ClientConfig configures a Client. Zero durations take the defaults noted.
type ClientConfig struct {
	Address  string // host:port, e.g. "127.0.0.1:5038"
	Username string
	Secret   string // never logged
	MD5      bool   // log in with the MD5 challenge instead of the plain secret
	// TLS, when set, wraps the connection; an empty ServerName is taken from
	// Address. See TLSConfig.
	TLS *tls.Config
	// Events is the login's Events: mask ("security,system", "on", "off").
	// Empty leaves the header out (Asterisk then sends every permitted class).
	Events       string
	PingInterval time.Duration // default 15s; a Ping unanswered within Timeout means a dead peer
	Timeout      time.Duration // dial, banner, login and each action; default 10s
	ReconnectMax time.Duration // backoff ceiling; default 30s
	// QueueSize bounds the events waiting for OnMessage; default 65536.
	QueueSize int
	// ListMaxItems and ListMaxBytes cap one list action's answer (items, and
	// the bytes of their keys and values); defaults DefaultListMaxItems and
	// DefaultListMaxBytes. Past either, the action fails with ErrListTooLong
	// and the rest of its items are read and dropped.
	ListMaxItems int
	ListMaxBytes int
	Logger       *slog.Logger
	// OnConnect runs after every successful (re)login, with the reader and
	// keepalive already running so it can call actions (resync). Its ctx ends
	// with the connection. An error is logged; the session stays up.
	OnConnect func(ctx context.Context, c *Client) error
	// OnMessage receives every event in order, from one goroutine. Responses
	// to actions and list items go to their callers instead. With
	// OnSecurityEvent set, security events go there instead.
	OnMessage func(Message)
	// OnSecurityEvent, when set, receives each security event parsed
	// (ParseSecurityEvent), in order, from the same goroutine, with Run's
	// context: the engine subscribes here. Events without a usable source
	// are counted (Stats.Unusable), never delivered.
	OnSecurityEvent SecurityHandler
	// OnEventType, when set, sees each event's EventLabel (for counting).
	OnEventType func(label string)
}

// ClientStats are counters since NewClient.
type ClientStats struct {
	Logins        uint64 // successful logins (1 + reconnects)
	Events        uint64 // events queued for OnMessage
	EventsDropped uint64 // events dropped because the queue was full
	Timeouts      uint64 // actions (incl. Ping) that got no response in time
	Malformed     uint64 // messages the codec skipped as malformed (ReaderStats)
	Oversized     uint64 // messages the codec skipped as over-long
	// ListOverflows counts list actions failed with ErrListTooLong;
	// ListItemsDropped the items read and dropped after the cap.
	ListOverflows    uint64
	ListItemsDropped uint64
	// ListItemsPeak is the most items one list action held at once.
	ListItemsPeak uint64
	// SecurityEvents were parsed and handed to OnSecurityEvent; Unusable
	// were security events without a usable source address.
	SecurityEvents uint64
	Unusable       uint64
}

// Client is an AMI client. Create it with NewClient, then call Run once.
type Client struct {
	cfg    ClientConfig
	log    *slog.Logger
	events chan Message
	ids    atomic.Uint64

	mu        sync.Mutex
	sess      *session  // logged-in session, nil otherwise
	downSince time.Time // when the last session ended (or NewClient), while sess is nil
	banner    string    // the last banner read
	loginMsg  string    // Message of the last accepted login's response
	stopOnce  func()    // ends Connect's dispatcher (nil without Connect)

	logins, queued, dropped, timeouts, malformed, oversized atomic.Uint64
	listOverflows, listDropped, listPeak                    atomic.Uint64
	security, unusable                                      atomic.Uint64
}

// NewClient returns a client; nothing happens until Run.
func NewClient(cfg ClientConfig) *Client {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 30 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1 << 16
	}
	if cfg.ListMaxItems <= 0 {
		cfg.ListMaxItems = DefaultListMaxItems
	}
	if cfg.ListMaxBytes <= 0 {
		cfg.ListMaxBytes = DefaultListMaxBytes
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{cfg: cfg, log: log.With("ami", cfg.Address), events: make(chan Message, cfg.QueueSize), downSince: time.Now()}
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	return ClientStats{Logins: c.logins.Load(), Events: c.queued.Load(),
		EventsDropped: c.dropped.Load(), Timeouts: c.timeouts.Load(),
		Malformed: c.malformed.Load(), Oversized: c.oversized.Load(),
		ListOverflows: c.listOverflows.Load(), ListItemsDropped: c.listDropped.Load(), ListItemsPeak: c.listPeak.Load(),
		SecurityEvents: c.security.Load(), Unusable: c.unusable.Load()}
}

// Connected reports whether a logged-in session is up.
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

func (c *Client) current() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

func (c *Client) setCurrent(s *session) {
	c.mu.Lock()
	if s == nil && c.sess != nil {
		c.downSince = time.Now()
	}
	c.sess = s
	c.mu.Unlock()
}

// DownFor is how long the client has had no logged-in session: 0 while one
// is up, else the time since the last one ended (or since NewClient).
func (c *Client) DownFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil {
		return 0
	}
	return time.Since(c.downSince)
}

// ReconnectBudget is how long a healthy reconnect may take: two backoff
// waits at the ceiling plus a dial and a login. Down longer than this, the
// connection is not coming back by itself (Asterisk stopped, AMI disabled,
// a firewall in between) and a person should know.
func (c *Client) ReconnectBudget() time.Duration {
	return 2*c.cfg.ReconnectMax + 2*c.cfg.Timeout
}

// TLSConfig builds client TLS settings for AMI over TLS (manager.conf
// tlsenable): caFile "" trusts the system roots; serverName "" is taken from
// the address at dial time.
func TLSConfig(caFile, serverName string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ami: reading tls_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ami: tls_ca %s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Run connects, logs in and reads until ctx is done, reconnecting with
// exponential backoff and jitter (each try logged). It returns nil after a
// clean shutdown (Logoff sent), or an error wrapping ErrAuth when Asterisk
// refuses the credentials. Call it once.
func (c *Client) Run(ctx context.Context) error {
	dctx, stopDispatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.dispatch(dctx) }()
	defer func() { stopDispatch(); wg.Wait() }()

	failures := 0
	for {
		loggedIn, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, ErrAuth) {
			return err // the caller reports it; retrying only fills Asterisk's security log
		}
		if loggedIn {
			failures = 0
		}
		failures++
		wait := c.backoff(failures)
		c.log.Warn("ami: connection failed; retrying", "attempt", failures, "retry_in", wait.Round(time.Millisecond).String(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is exponential from 250ms, capped at ReconnectMax, with jitter in
// [d/2, d] so that many clients restarted together do not reconnect in step.
func (c *Client) backoff(n int) time.Duration {
	d := 250 * time.Millisecond
	for i := 1; i < n && d < c.cfg.ReconnectMax; i++ {
		d *= 2
	}
	d = min(d, c.cfg.ReconnectMax)
	return d/2 + rand.N(d/2+1)
}

func (c *Client) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-c.events:
			c.route(ctx, m)
		}
	}
}

func (c *Client) enqueue(m Message) {
	if c.cfg.OnMessage == nil && c.cfg.OnSecurityEvent == nil && c.cfg.OnEventType == nil {
		return
	}
	select {
	case c.events <- m:
		c.queued.Add(1)
	default:
		if n := c.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, ... drops
			c.log.Warn("ami: event queue full; dropping events", "dropped_total", n)
		}
	}
}

// session runs one connection to its end. loggedIn tells Run whether the
// login succeeded (then the backoff starts over).
func (c *Client) session(ctx context.Context) (loggedIn bool, err error) {
	nc, rd, err := c.dial(ctx)
	if err != nil {
		return false, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := &session{c: c, nc: nc, pending: map[string]*call{}, done: make(chan struct{})}
	go s.read(rd)
	defer s.close(nil)
	go func() { // sctx ends with the connection, for OnConnect and keepalive
		select {
		case <-s.done:
			cancel()
		case <-sctx.Done():
		}
	}()

	if err := s.login(sctx); err != nil {
		return false, err
	}
	c.logins.Add(1)
	c.setCurrent(s)
	defer c.setCurrent(nil)
	c.log.Info("ami: logged in", "user", c.cfg.Username, "events", c.cfg.Events)

	go s.keepalive(sctx)
	if c.cfg.OnConnect != nil {
		if err := c.cfg.OnConnect(sctx, c); err != nil && sctx.Err() == nil {
			c.log.Warn("ami: on-connect hook failed", "err", err)
		}
	}
	select {
	case <-s.done:
		return true, s.cause()
	case <-ctx.Done():
		s.logoff()
		return true, nil
	}
}

func (c *Client) dial(ctx context.Context) (net.Conn, *Reader, error) {
	d := net.Dialer{Timeout: c.cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", c.cfg.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("ami: connecting to %s: %w", c.cfg.Address, err)
	}
	if c.cfg.TLS != nil {
		tc := c.cfg.TLS.Clone()
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(c.cfg.Address)
		}
		tn := tls.Client(nc, tc)
		hctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := tn.HandshakeContext(hctx)
		cancel()
		if err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("ami: TLS handshake with %s: %w", c.cfg.Address, err)
		}
		nc = tn
	}
	rd := NewReader(nc, ReaderOptions{})
	nc.SetReadDeadline(time.Now().Add(c.cfg.Timeout))
	banner, err := rd.ReadBanner()
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("ami: %s: %w", c.cfg.Address, err)
	}
	c.log.Debug("ami: connected", "banner", banner)
	c.mu.Lock()
	c.banner = banner
	c.mu.Unlock()
	return nc, rd, nil
}

// session is one TCP/TLS connection and its in-flight actions.
type session struct {
	c  *Client
	nc net.Conn

	wmu sync.Mutex // one message on the wire at a time

	mu      sync.Mutex
	pending map[string]*call
	closed  bool
	err     error
	done    chan struct{} // closed when the connection is gone
}

type call struct {
	list   bool
	resp   Message
	items  []Message
	bytes  int // keys and values of items
	err    error
	done   chan struct{}
	action string
	// overflowed: the list passed its cap; done is closed and the caller has
	// its error, but the entry stays pending so the rest of the list is
	// dropped here instead of reaching OnMessage as events.
	overflowed bool
}

func (s *session) cause() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// close ends the connection once, failing every pending action.
func (s *session) close(err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.err = err
	for id, cl := range s.pending {
		delete(s.pending, id)
		if cl.overflowed {
			continue // its caller has its error already
		}
		cl.err = fmt.Errorf("ami: %s: connection to %s lost: %w", cl.action, s.c.cfg.Address, ErrClosed)
		close(cl.done)
	}
	s.mu.Unlock()
	s.nc.Close()
	close(s.done)
}

// read is the dedicated reader: it never waits on a consumer.
func (s *session) read(rd *Reader) {
	var seen ReaderStats
	for {
		m, err := rd.ReadMessage()
		if st := rd.Stats(); st.Malformed != seen.Malformed || st.Oversized != seen.Oversized {
			s.c.malformed.Add(st.Malformed - seen.Malformed)
			s.c.oversized.Add(st.Oversized - seen.Oversized)
			seen = st
		}
		if err != nil {
			s.close(fmt.Errorf("ami: reading from %s: %w", s.c.cfg.Address, err))
			return
		}
		if id := m.Get("ActionID"); id != "" && s.deliver(id, m) {
			continue
		}
		if m.Has("Event") {
			m.Received = time.Now()
			s.c.enqueue(m)
		}
	}
}

// deliver hands m to the action waiting for id; false if none claims it.
func (s *session) deliver(id string, m Message) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := s.pending[id]
	if cl == nil {
		return false
	}
	if cl.overflowed {
		if m.Has("Response") || strings.EqualFold(m.Get("EventList"), "Complete") {
			delete(s.pending, id) // the list ended at last
		} else {
			s.c.listDropped.Add(1)
		}
		return true
	}
	if m.Has("Response") {
		cl.resp = m
		if !cl.list || !strings.EqualFold(m.Get("EventList"), "start") {
			s.finish(id, cl)
		}
		return true
	}
	if !cl.list {
		return false // e.g. OriginateResponse: an event like any other
	}
	if strings.EqualFold(m.Get("EventList"), "Complete") {
		s.finish(id, cl)
		return true
	}
	size := messageBytes(&m)
	if len(cl.items) >= s.c.cfg.ListMaxItems || cl.bytes+size > s.c.cfg.ListMaxBytes {
		cl.err = fmt.Errorf("ami: %s from %s: more than %d items or %d bytes: %w",
			cl.action, s.c.cfg.Address, s.c.cfg.ListMaxItems, s.c.cfg.ListMaxBytes, ErrListTooLong)
		cl.items, cl.overflowed = nil, true
		// Counted before the caller is woken, so its Stats see the overflow.
		s.c.listOverflows.Add(1)
		s.c.listDropped.Add(1)
		close(cl.done)
		s.c.log.Warn("ami: list answer over its cap; dropping the rest of it", "action", cl.action,
			"max_items", s.c.cfg.ListMaxItems, "max_bytes", s.c.cfg.ListMaxBytes)
		return true
	}
	cl.items = append(cl.items, m)
	cl.bytes += size
	if n := uint64(len(cl.items)); n > s.c.listPeak.Load() {
		s.c.listPeak.Store(n) // under s.mu; one session at a time writes it
	}
	return true
}

// messageBytes is what m's keys and values take.
func messageBytes(m *Message) int {
	n := 0
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

func (s *session) finish(id string, cl *call) {
	delete(s.pending, id)
	close(cl.done)
}

func (s *session) forget(id string) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

func (s *session) write(m Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.nc.SetWriteDeadline(time.Now().Add(s.c.cfg.Timeout))
	return WriteMessage(s.nc, m)
}

// do sends m with a fresh ActionID and waits for its response (and, for a
// list, its items up to EventList: Complete).
func (s *session) do(ctx context.Context, m Message, list bool) (*call, error) {
	action := m.Get("Action")
	id := s.c.cfg.Username + "-" + strconv.FormatUint(s.c.ids.Add(1), 10)
	cl := &call{list: list, done: make(chan struct{}), action: action}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("ami: %s: %w", action, ErrClosed)
	}
	s.pending[id] = cl
	s.mu.Unlock()

	if err := s.write(withActionID(m, id)); err != nil {
		s.forget(id)
		s.close(fmt.Errorf("ami: writing to %s: %w", s.c.cfg.Address, err))
		return nil, fmt.Errorf("ami: sending %s: %w", action, err)
	}
	result := func() (*call, error) {
		if cl.err != nil {
			return nil, cl.err
		}
		return cl, nil
	}
	t := time.NewTimer(s.c.cfg.Timeout)
	defer t.Stop()
	select {
	case <-cl.done:
		return result()
	case <-ctx.Done():
	case <-t.C:
	}
	// A response that arrived together with the cancellation wins: the
	// connection closing right after a refused Login ends ctx too.
	select {
	case <-cl.done:
		return result()
	default:
	}
	s.forget(id)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("ami: %s: %w", action, ctx.Err())
	}
	s.c.timeouts.Add(1)
	return nil, fmt.Errorf("ami: %s to %s: no response within %s: %w", action, s.c.cfg.Address, s.c.cfg.Timeout, ErrTimeout)
}

// withActionID copies m with ActionID id right after the Action header
// (where Asterisk's own clients put it), replacing any given one.
func withActionID(m Message, id string) Message {
	out := Message{Headers: make([]Header, 0, len(m.Headers)+1)}
	placed := false
	for _, h := range m.Headers {
		if strings.EqualFold(h.Key, "ActionID") {
			continue
		}
		out.Headers = append(out.Headers, h)
		if !placed && strings.EqualFold(h.Key, "Action") {
			out.Headers = append(out.Headers, Header{"ActionID", id})
			placed = true
		}
	}
	if !placed {
		out.Headers = append([]Header{{"ActionID", id}}, out.Headers...)
	}
	return out
}

func (s *session) login(ctx context.Context) error {
	cfg := &s.c.cfg
	login := Message{Headers: []Header{{"Action", "Login"}}}
	if cfg.MD5 {
		cl, err := s.do(ctx, Message{Headers: []Header{{"Action", "Challenge"}, {"AuthType", "MD5"}}}, false)
		if err != nil {
			return fmt.Errorf("ami: MD5 challenge from %s: %w", cfg.Address, err)
		}
		challenge := cl.resp.Get("Challenge")
		if !strings.EqualFold(cl.resp.Get("Response"), "Success") || challenge == "" {
			return fmt.Errorf("ami: %s refused the MD5 challenge (%s): set [ami] auth = \"plain\"", cfg.Address, cl.resp.Get("Message"))
		}
		sum := md5.Sum([]byte(challenge + cfg.Secret))
		login.Headers = append(login.Headers, Header{"AuthType", "MD5"}, Header{"Username", cfg.Username},
			Header{"Key", hex.EncodeToString(sum[:])})
	} else {
		login.Headers = append(login.Headers, Header{"Username", cfg.Username}, Header{"Secret", cfg.Secret})
	}
	if cfg.Events != "" {
		login.Headers = append(login.Headers, Header{"Events", cfg.Events})
	}
	cl, err := s.do(ctx, login, false)
	if err != nil {
		return fmt.Errorf("ami: login to %s: %w", cfg.Address, err)
	}
	if !strings.EqualFold(cl.resp.Get("Response"), "Success") {
		return &AuthError{User: cfg.Username, Address: cfg.Address, Message: cl.resp.Get("Message")}
	}
	s.c.mu.Lock()
	s.c.loginMsg = cl.resp.Get("Message")
	s.c.mu.Unlock()
	return nil
}

// LoginMessage is the Message of the last accepted login's response
// (Asterisk says "Authentication accepted").
func (c *Client) LoginMessage() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loginMsg
}

// keepalive pings; a Ping unanswered within Timeout means the peer is dead
// (a half-open TCP connection never reports an error by itself).
func (s *session) keepalive(ctx context.Context) {
	t := time.NewTicker(s.c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
		_, err := s.do(ctx, Message{Headers: []Header{{"Action", "Ping"}}}, false)
		if errors.Is(err, ErrTimeout) {
			s.c.log.Warn("ami: Ping unanswered; dropping the connection", "timeout", s.c.cfg.Timeout)
			s.close(err)
			return
		}
	}
}

// logoff says goodbye so Asterisk logs a clean session end, then closes.
func (s *session) logoff() {
	ctx, cancel := context.WithTimeout(context.Background(), min(s.c.cfg.Timeout, 2*time.Second))
	defer cancel()
	if _, err := s.do(ctx, Message{Headers: []Header{{"Action", "Logoff"}}}, false); err != nil {
		s.c.log.Debug("ami: Logoff", "err", err)
	}
	s.close(nil)
}

// Banner is the banner the last connection read ("" before one was read):
// whether the address answered as an Asterisk manager at all.
func (c *Client) Banner() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.banner
}

// Connect is Run's login once, for a short session (`sipsentry doctor`):
// dial, banner, login, with no keepalive and no reconnect. After it returns
// nil, actions may be called and events reach OnMessage until Close. A
// refused login is an error wrapping ErrAuth, as with Run. Use either Run
// or Connect on a client, once.
func (c *Client) Connect(ctx context.Context) error {
	nc, rd, err := c.dial(ctx)
	if err != nil {
		return err
	}
	s := &session{c: c, nc: nc, pending: map[string]*call{}, done: make(chan struct{})}
	go s.read(rd)
	dctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.dispatch(dctx) }()
	stopDispatch := func() { stop(); wg.Wait() }
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // a connection lost during the login ends it at once
		select {
		case <-s.done:
			cancel()
		case <-lctx.Done():
		}
	}()
	if err := s.login(lctx); err != nil {
		s.close(nil)
		stopDispatch()
		return err
	}
	c.logins.Add(1)
	c.mu.Lock()
	c.sess, c.stopOnce = s, stopDispatch
	c.mu.Unlock()
	c.log.Info("ami: logged in (one session)", "user", c.cfg.Username, "events", c.cfg.Events)
	return nil
}

// Close ends Connect's session with a Logoff.
func (c *Client) Close() {
	c.mu.Lock()
	s, stop := c.sess, c.stopOnce
	c.stopOnce = nil
	c.mu.Unlock()
	if s != nil {
		s.logoff()
		c.setCurrent(nil)
	}
	if stop != nil {
		stop()
	}
}

// Action sends m (an "Action:" message) and returns its response. A
// "Response: Error" comes back as the message plus an *ActionError.
func (c *Client) Action(ctx context.Context, m Message) (Message, error) {
	s := c.current()
	if s == nil {
		return Message{}, fmt.Errorf("ami: %s: %w", m.Get("Action"), ErrClosed)
	}
	cl, err := s.do(ctx, m, false)
	if err != nil {
		return Message{}, err
	}
	if strings.EqualFold(cl.resp.Get("Response"), "Error") {
		return cl.resp, &ActionError{Action: m.Get("Action"), Message: cl.resp.Get("Message")}
	}
	return cl.resp, nil
}

// ListAction sends a list action (PJSIPShowContacts, PJSIPShowEndpoints, ...)
// and returns its item events, without the closing *Complete event.
func (c *Client) ListAction(ctx context.Context, m Message) ([]Message, error) {
	s := c.current()
	if s == nil {
		return nil, fmt.Errorf("ami: %s: %w", m.Get("Action"), ErrClosed)
	}
	cl, err := s.do(ctx, m, true)
	if err != nil {
		return nil, err
	}
	if strings.EqualFold(cl.resp.Get("Response"), "Error") {
		return nil, &ActionError{Action: m.Get("Action"), Message: cl.resp.Get("Message")}
	}
	return cl.items, nil
}

// PJSIPShowContacts lists the registered contacts. Entries that do not parse
// are skipped. It needs an AMI user with write=system (or reporting).
func (c *Client) PJSIPShowContacts(ctx context.Context) ([]Contact, error) {
	items, err := c.ListAction(ctx, Message{Headers: []Header{{"Action", "PJSIPShowContacts"}}})
	if err != nil {
		var ae *ActionError
		// Asterisk answers an empty registry with an error, not an empty list.
		if errors.As(err, &ae) && strings.Contains(strings.ToLower(ae.Message), "no contacts") {
			return nil, nil
		}
		return nil, err
	}
	out := make([]Contact, 0, len(items))
	for i := range items {
		if !strings.EqualFold(items[i].Get("Event"), "ContactList") {
			continue
		}
		ct, err := ParseContact(&items[i])
		if err != nil {
			c.log.Debug("ami: skipping a ContactList entry", "err", err)
			continue
		}
		out = append(out, ct)
	}
	return out, nil
}
