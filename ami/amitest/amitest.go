// Package amitest is a scriptable fake Asterisk manager (AMI) server for
// tests and dev tools. It speaks the bytes recorded from a real Asterisk 22
// (banner "Asterisk Call Manager/11.0.0", Login/Challenge/Ping/Logoff
// responses, PJSIPShowContacts shaped like ami-action-pjsipshowcontacts.raw)
// and has switches for the faults a client must survive: a wrong secret, the
// peer closing mid-message, one byte per write, a Ping never answered, a
// restart while events flow, an action never answered.
//
// It listens on loopback only and must never be used as a real manager.
package amitest

import (
	"crypto/md5"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	Username  string // default "sentry"
	Secret    string // default "sentry-secret"
	Banner    string // default "Asterisk Call Manager/11.0.0"
	Challenge string // MD5 challenge handed out; default "642625458" (as recorded)
	// Listen is the address to listen on; default "127.0.0.1:0".
	Listen string
	// Contacts answer PJSIPShowContacts.
	Contacts []ami.Contact
	// OneBytePerWrite sends everything one byte per write(2).
	OneBytePerWrite bool
	// NoPing leaves Ping unanswered (a dead peer); see also SetPing.
	NoPing bool
	// Swallow lists actions that never get a response; see also SetSwallow.
	Swallow []string
	// NoFullyBooted leaves out the FullyBooted event after login.
	NoFullyBooted bool
	// Handler, when set, sees every request of a logged-in client first and
	// returns true when it handled it (answered or chose not to).
	Handler func(c *Conn, req ami.Message) bool
	// OnLogin runs (in its own goroutine) after each successful login.
	OnLogin func(c *Conn)
	// TLS, when set, serves AMI over TLS (manager.conf tlsenable).
	TLS *tls.Config
}

// Server is the fake manager. Its methods are safe for concurrent use.
type Server struct {
	o  Options
	ln net.Listener
	wg sync.WaitGroup

	mu       sync.Mutex
	cond     *sync.Cond
	conns    map[*Conn]bool
	closed   bool
	noPing   bool
	swallow  map[string]bool
	logins   int
	failed   int
	requests []ami.Message
}

// Conn is one client connection.
type Conn struct {
	s        *Server
	nc       net.Conn
	wmu      sync.Mutex
	loggedIn bool // under s.mu
	events   bool // under s.mu: Events not "off"
}

// NewServer starts a server on 127.0.0.1:0 that is closed when t ends.
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts a server outside a test (tools/amireplay). Close stops it.
func Start(o Options) (*Server, error) {
	if o.Username == "" {
		o.Username = "sentry"
	}
	if o.Secret == "" {
		o.Secret = "sentry-secret"
	}
	if o.Banner == "" {
		o.Banner = "Asterisk Call Manager/11.0.0"
	}
	if o.Challenge == "" {
		o.Challenge = "642625458"
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("amitest: %w", err)
	}
	if o.TLS != nil {
		ln = tls.NewListener(ln, o.TLS)
	}
	s := &Server{o: o, ln: ln, conns: map[*Conn]bool{}, noPing: o.NoPing, swallow: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	for _, a := range o.Swallow {
		s.swallow[strings.ToLower(a)] = true
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is the host:port to connect to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops listening, drops every connection and waits for them.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.cond.Broadcast()
	s.mu.Unlock()
	s.ln.Close()
	s.dropAll()
	s.wg.Wait()
}

// Restart drops every connection and keeps listening, as an Asterisk
// restart does to its manager sessions.
func (s *Server) Restart() { s.dropAll() }

func (s *Server) dropAll() {
	s.mu.Lock()
	cs := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.nc.Close()
	}
}

// SetPing switches Ping answers on or off at run time.
func (s *Server) SetPing(answer bool) {
	s.mu.Lock()
	s.noPing = !answer
	s.mu.Unlock()
}

// SetSwallow makes action (case-insensitive) go unanswered, or answered again.
func (s *Server) SetSwallow(action string, swallow bool) {
	s.mu.Lock()
	s.swallow[strings.ToLower(action)] = swallow
	s.mu.Unlock()
}

// Send writes raw (whole AMI messages) to every logged-in client that did
// not log in with Events: off.
func (s *Server) Send(raw []byte) {
	for _, c := range s.eventConns() {
		c.Write(raw)
	}
}

// Cut writes raw, meant to end inside a message, to every logged-in client
// and then closes their connections: a peer dying mid-write.
func (s *Server) Cut(raw []byte) {
	for _, c := range s.eventConns() {
		c.Write(raw)
		c.nc.Close()
	}
}

func (s *Server) eventConns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []*Conn
	for c := range s.conns {
		if c.loggedIn && c.events {
			cs = append(cs, c)
		}
	}
	return cs
}

// Logins is the number of successful logins so far; FailedLogins the refused ones.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// FailedLogins is the number of refused logins so far.
func (s *Server) FailedLogins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

// Connections is the number of connected clients right now.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// WaitLogins blocks until at least n successful logins happened, or the
// server is closed (then it returns false).
func (s *Server) WaitLogins(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.logins < n && !s.closed {
		s.cond.Wait()
	}
	return s.logins >= n
}

// Requests returns every message clients sent, in arrival order.
func (s *Server) Requests() []ami.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ami.Message(nil), s.requests...)
}

// WaitRequest blocks until a request with this Action (case-insensitive)
// arrived and returns the first one; ok is false if the server closed first.
func (s *Server) WaitRequest(action string) (m ami.Message, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		for _, r := range s.requests {
			if strings.EqualFold(r.Get("Action"), action) {
				return r, true
			}
		}
		if s.closed {
			return ami.Message{}, false
		}
		s.cond.Wait()
	}
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		c := &Conn{s: s, nc: nc}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.conns[c] = true
		s.cond.Broadcast()
		s.mu.Unlock()
		s.wg.Add(1)
		go c.serve()
	}
}

// Write sends raw bytes to this client (one byte per write if so set).
// Errors are ignored: a gone client is the client's problem.
func (c *Conn) Write(raw []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.write(raw)
}

func (c *Conn) write(raw []byte) {
	if !c.s.o.OneBytePerWrite {
		c.nc.Write(raw)
		return
	}
	for i := range raw {
		if _, err := c.nc.Write(raw[i : i+1]); err != nil {
			return
		}
	}
}

func (c *Conn) reply(id string, kv ...string) { c.Write(response(id, kv...)) }

// response renders "Response: kv[0]", ActionID id, then key/value pairs.
func response(id string, kv ...string) []byte {
	var b strings.Builder
	b.WriteString("Response: " + kv[0] + "\r\n")
	if id != "" {
		b.WriteString("ActionID: " + id + "\r\n")
	}
	for i := 1; i+1 < len(kv); i += 2 {
		b.WriteString(kv[i] + ": " + kv[i+1] + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// Close drops this connection.
func (c *Conn) Close() { c.nc.Close() }

func (c *Conn) serve() {
	s := c.s
	defer s.wg.Done()
	defer func() {
		c.nc.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	c.Write([]byte(s.o.Banner + "\r\n"))
	rd := ami.NewReader(c.nc, ami.ReaderOptions{})
	challenge := ""
	for {
		req, err := rd.ReadMessage()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.cond.Broadcast()
		loggedIn := c.loggedIn
		swallow := s.swallow[strings.ToLower(req.Get("Action"))]
		noPing := s.noPing
		s.mu.Unlock()

		id := req.Get("ActionID")
		action := req.Get("Action")
		if swallow {
			continue
		}
		switch {
		case strings.EqualFold(action, "Challenge"):
			if !strings.EqualFold(req.Get("AuthType"), "MD5") {
				c.reply(id, "Error", "Message", "Must specify AuthType")
				continue
			}
			challenge = s.o.Challenge
			c.reply(id, "Success", "Challenge", challenge)
			continue
		case strings.EqualFold(action, "Login"):
			if !c.login(req, challenge) {
				s.mu.Lock()
				s.failed++
				s.cond.Broadcast()
				s.mu.Unlock()
				c.reply(id, "Error", "Message", "Authentication failed")
				return // Asterisk drops the session after a refused login
			}
			// Logged in before the client can know it (so a Send right after
			// the client's login lands), yet nothing is sent before the
			// response: the write lock is held across both.
			c.wmu.Lock()
			s.mu.Lock()
			c.loggedIn = true
			c.events = !strings.EqualFold(req.Get("Events"), "off")
			s.logins++
			s.cond.Broadcast()
			s.mu.Unlock()
			c.write(response(id, "Success", "Message", "Authentication accepted"))
			if c.events && !s.o.NoFullyBooted {
				c.write([]byte("Event: FullyBooted\r\nPrivilege: system,all\r\nUptime: 2\r\nLastReload: 2\r\nStatus: Fully Booted\r\n\r\n"))
			}
			c.wmu.Unlock()
			if s.o.OnLogin != nil {
				go s.o.OnLogin(c)
			}
			continue
		case strings.EqualFold(action, "Logoff"):
			c.reply(id, "Goodbye", "Message", "Thanks for all the fish.")
			return
		case !loggedIn:
			c.reply(id, "Error", "Message", "Permission denied") // what Asterisk answers before login
			continue
		}
		if s.o.Handler != nil && s.o.Handler(c, req) {
			continue
		}
		switch {
		case strings.EqualFold(action, "Ping"):
			if noPing {
				continue
			}
			now := time.Now()
			c.reply(id, "Success", "Ping", "Pong", "Timestamp",
				fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000))
		case strings.EqualFold(action, "PJSIPShowContacts"):
			c.Write(ContactsResponse(id, s.o.Contacts))
		default:
			c.reply(id, "Error", "Message", "Invalid/unknown command: "+action+". Use Action: ListCommands to show available commands.")
		}
	}
}

func (c *Conn) login(req ami.Message, challenge string) bool {
	o := c.s.o
	if req.Get("Username") != o.Username {
		return false
	}
	if strings.EqualFold(req.Get("AuthType"), "MD5") {
		if challenge == "" {
			return false
		}
		return req.Get("Key") == MD5Key(challenge, o.Secret)
	}
	return req.Get("Secret") == o.Secret
}

// MD5Key is the Login key for a challenge: md5hex(challenge + secret).
func MD5Key(challenge, secret string) string {
	sum := md5.Sum([]byte(challenge + secret))
	return hex.EncodeToString(sum[:])
}

// ContactsResponse is the whole answer to PJSIPShowContacts with ActionID
// id, laid out like Asterisk 22's (ami-action-pjsipshowcontacts.raw).
func ContactsResponse(id string, cs []ami.Contact) []byte {
	var b strings.Builder
	w := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	w("Response", "Success")
	w("ActionID", id)
	w("EventList", "start")
	w("Message", "A listing of Contacts follows, presented as ContactList events")
	b.WriteString("\r\n")
	for i, ct := range cs {
		name := ct.ObjectName
		if name == "" {
			name = ct.Endpoint + ";@" + fmt.Sprintf("%032x", i+1)
		}
		exp := ""
		if !ct.ExpirationTime.IsZero() {
			exp = strconv.FormatInt(ct.ExpirationTime.Unix(), 10)
		}
		w("Event", "ContactList")
		w("ActionID", id)
		w("ObjectType", "contact")
		w("ObjectName", name)
		w("ViaAddr", ct.ViaAddr)
		w("QualifyTimeout", "3.000000")
		w("Qualify2xxOnly", "false")
		w("CallId", ct.CallID)
		w("RegServer", ct.RegServer)
		w("PruneOnBoot", "no")
		w("Path", "")
		w("Endpoint", ct.Endpoint)
		w("ViaPort", ct.ViaPort)
		w("AuthenticateQualify", "no")
		w("Uri", ct.URI)
		w("QualifyFrequency", "60")
		w("UserAgent", ct.UserAgent)
		w("ExpirationTime", exp)
		w("OutboundProxy", "")
		w("Status", ct.Status)
		w("RoundtripUsec", "N/A")
		b.WriteString("\r\n")
	}
	w("Event", "ContactListComplete")
	w("ActionID", id)
	w("EventList", "Complete")
	w("ListItems", strconv.Itoa(len(cs)))
	b.WriteString("\r\n")
	return []byte(b.String())
}

// ErrNoBlock is returned by Transcript when a label is not in the file.
var ErrNoBlock = errors.New("amitest: no such block in the transcript")

// Transcript returns the bytes of the block "#### <dir> <label>" of a
// recorded transcript (e.g. dir "S->C", label "PJSIPShowContacts"): exactly
// the bytes up to the next marker line.
func Transcript(data []byte, dir, label string) ([]byte, error) {
	marker := "#### " + dir + " " + label + "\r\n"
	s := string(data)
	i := strings.Index(s, marker)
	if i < 0 {
		return nil, fmt.Errorf("%w: %q", ErrNoBlock, marker)
	}
	rest := s[i+len(marker):]
	if strings.HasPrefix(rest, "#### ") {
		return nil, nil
	}
	if j := strings.Index(rest, "\n#### "); j >= 0 {
		rest = rest[:j+1]
	}
	return []byte(rest), nil
}

// Closed reports whether the connection is gone.
func (c *Conn) Closed() bool {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return !c.s.conns[c]
}
