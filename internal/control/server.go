package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// DefaultPath is where the daemon listens without control.socket.
const DefaultPath = "/run/sipsentry/control.sock"

// Server defaults.
const (
	// DefaultReadTimeout bounds the wait for a request line: a client
	// writes it at once, so a peer that has not after this is gone or hostile.
	DefaultReadTimeout = 5 * time.Second
	// DefaultHandleTimeout bounds one operation in the engine (a kernel
	// add, a DB write) and the writing of its answer.
	DefaultHandleTimeout = 30 * time.Second
	// DefaultMaxConns bounds connections served at once; more are answered
	// "unavailable" and closed.
	DefaultMaxConns = 16
)

// ErrInUse: another process serves the socket path.
var ErrInUse = errors.New("control: socket in use")

// ServerOptions configure Listen.
type ServerOptions struct {
	// Path of the socket; "" is DefaultPath.
	Path string
	// Access says who besides root may use it. With a group the socket is
	// 0660 root:group, without it 0600 root.
	Access Access
	// Handler does the work; required.
	Handler Handler
	// Logger (nil: discarded).
	Logger *slog.Logger
	// Timeouts and the connection cap; zero values take the defaults.
	ReadTimeout   time.Duration
	HandleTimeout time.Duration
	MaxConns      int
	// Now is the clock for listings (nil: time.Now).
	Now func() time.Time
}

// Server serves the control socket.
type Server struct {
	o     ServerOptions
	ln    *net.UnixListener
	log   *slog.Logger
	slots chan struct{} // one per connection being served
	conns sync.WaitGroup
}

// Listen creates the socket (its parent directory 0755 when missing),
// replacing a stale socket file a dead daemon left, and sets its owner and
// mode. It refuses a path held by a live server (ErrInUse) or by anything
// that is not a socket.
func Listen(o ServerOptions) (*Server, error) {
	if o.Handler == nil {
		return nil, errors.New("control: no handler")
	}
	if o.Path == "" {
		o.Path = DefaultPath
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.HandleTimeout <= 0 {
		o.HandleTimeout = DefaultHandleTimeout
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := filepath.Dir(o.Path)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("control: creating %s: %w", dir, err)
		}
		_ = os.Chmod(dir, 0o755) // MkdirAll's mode passed through the umask
	}
	if err := removeStale(o.Path); err != nil {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: o.Path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control: listening on %s: %w", o.Path, err)
	}
	ln.SetUnlinkOnClose(true)
	// Between bind and chmod the socket has the umask's mode; that window
	// grants nothing, because every connection's credentials are checked.
	mode := os.FileMode(0o600)
	if o.Access.GroupSet {
		mode = 0o660
		// Giving the file to a group the daemon is not in takes CAP_CHOWN.
		if err := os.Chown(o.Path, -1, int(o.Access.Group)); err != nil {
			ln.Close()
			return nil, fmt.Errorf("control: giving %s to control.group (gid %d): %w (under systemd, add CAP_CHOWN to CapabilityBoundingSet and AmbientCapabilities)",
				o.Path, o.Access.Group, err)
		}
	}
	if err := os.Chmod(o.Path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: chmod %s: %w", o.Path, err)
	}
	return &Server{o: o, ln: ln, log: log, slots: make(chan struct{}, o.MaxConns)}, nil
}

// removeStale removes a socket file no server answers on.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s exists and is not a socket: remove it or set control.socket elsewhere", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: another sipsentry daemon serves %s (stop it first, or set control.socket elsewhere)", ErrInUse, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control: removing the stale socket %s: %w", path, err)
	}
	return nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.o.Path }

// Serve accepts connections until ctx ends, then closes the socket (and
// removes its file) and waits for the connections being served.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	defer s.conns.Wait()
	defer s.ln.Close()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("control: accept: %w", err)
		}
		select {
		case s.slots <- struct{}{}:
		default:
			s.log.Warn("control: too many connections; one refused", "max", s.o.MaxConns)
			s.refuseBusy(c)
			continue
		}
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			defer func() { <-s.slots }()
			s.serveConn(ctx, c)
		}()
	}
}

// Close stops accepting; Serve returns.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) refuseBusy(c *net.UnixConn) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	writeResponse(c, Response{Error: &WireError{Code: CodeUnavailable, Message: "control: the daemon is serving too many control connections; try again"}})
}

func (s *Server) serveConn(ctx context.Context, c *net.UnixConn) {
	defer c.Close()
	// At shutdown a peer that is slow to write or read is cut off at
	// once, not after its deadlines.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	peer, err := peerOf(c)
	if err != nil {
		s.log.Error("control: connection without credentials; closed", "err", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(s.o.ReadTimeout))
	line, err := readLine(bufio.NewReaderSize(c, 512), MaxRequestBytes)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("%w: no complete request line within %s", ErrProtocol, s.o.ReadTimeout)
	}
	_ = c.SetWriteDeadline(time.Now().Add(s.o.HandleTimeout))
	if !s.o.Access.allows(peer) {
		// Refused before anything the request says is looked at.
		s.log.Warn("control: refused a peer that is neither root nor in control.group",
			"uid", peer.UID, "gid", peer.GID, "pid", peer.PID)
		msg := fmt.Sprintf("control: uid %d may not use the control socket: run as root", peer.UID)
		if s.o.Access.GroupSet {
			msg += fmt.Sprintf(" or as a member of control.group (gid %d)", s.o.Access.Group)
		}
		writeResponse(c, Response{Error: &WireError{Code: CodeUnauthorized, Message: msg}})
		return
	}
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.log.Warn("control: bad request line", "uid", peer.UID, "pid", peer.PID, "err", err)
			writeResponse(c, Response{Error: wireError(err)})
		}
		return
	}
	req, err := decodeRequest(line)
	if err != nil {
		s.log.Warn("control: bad request", "uid", peer.UID, "pid", peer.PID, "err", err)
		writeResponse(c, Response{Error: wireError(err)})
		return
	}
	hctx, cancel := context.WithTimeout(ctx, s.o.HandleTimeout)
	defer cancel()
	s.dispatch(hctx, c, req, peer)
}

// answer starts the writing of an answer, with its own deadline: the
// handler may have used all of its time.
func (s *Server) answer(c *net.UnixConn, r Response) bool {
	_ = c.SetWriteDeadline(time.Now().Add(s.o.HandleTimeout))
	return writeResponse(c, r)
}

// handlerError names a handler that ran out of time.
func (s *Server) handlerError(err error) *WireError {
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("control: the daemon did not finish within %s (deadline exceeded): %w", s.o.HandleTimeout, err)
	}
	return wireError(err)
}

// readLine reads one line of at most max bytes (newline excluded) from br,
// never holding more than max plus br's buffer.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > max+1 {
			return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, max)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return bytes.TrimSuffix(buf, []byte("\n")), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("%w: line without its newline", ErrProtocol)
		}
		return nil, fmt.Errorf("%w: reading: %w", ErrProtocol, err)
	}
}

func decodeRequest(line []byte) (Request, error) {
	var req Request
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return Request{}, fmt.Errorf("%w: not a request: %s", ErrProtocol, sanitize(err.Error(), 200))
	}
	if dec.More() {
		return Request{}, fmt.Errorf("%w: more than one JSON value on the line", ErrProtocol)
	}
	if req.V != Version {
		return Request{}, fmt.Errorf("%w: protocol version %d, this daemon speaks %d: use the sipsentry binary of the running daemon", ErrProtocol, req.V, Version)
	}
	return req, nil
}

func (s *Server) dispatch(ctx context.Context, c *net.UnixConn, req Request, peer Peer) {
	h := s.o.Handler
	var resp Response
	var err error
	target := sanitize(req.Target, 64)
	switch req.Op {
	case OpBan:
		var rec BanRecord
		rec, err = func() (BanRecord, error) {
			a, err := ParseAddr(req.Target)
			if err != nil {
				return BanRecord{}, err
			}
			d, err := ParseFor(req.For, DefaultDuration)
			if err != nil {
				return BanRecord{}, err
			}
			if err := CheckText("reason", req.Text); err != nil {
				return BanRecord{}, err
			}
			return h.Ban(ctx, a, d, req.Text, peer.UID)
		}()
		resp.Ban = &rec
	case OpUnban:
		err = func() error {
			a, err := ParseAddr(req.Target)
			if err != nil {
				return err
			}
			return h.Unban(ctx, a, peer.UID)
		}()
	case OpAllow:
		var rec AllowRecord
		rec, err = func() (AllowRecord, error) {
			p, err := ParsePrefix(req.Target)
			if err != nil {
				return AllowRecord{}, err
			}
			d, err := ParseFor(req.For, 0)
			if err != nil {
				return AllowRecord{}, err
			}
			if err := CheckText("comment", req.Text); err != nil {
				return AllowRecord{}, err
			}
			return h.Allow(ctx, p, d, req.Text, peer.UID)
		}()
		resp.Allow = &rec
	case OpDisallow:
		err = func() error {
			p, err := ParsePrefix(req.Target)
			if err != nil {
				return err
			}
			return h.Disallow(ctx, p, peer.UID)
		}()
	case OpBans:
		s.list(ctx, c, func(w func(Response) error) error {
			return h.Bans(ctx, s.o.Now(), func(b BanRecord) error { return w(Response{OK: true, Ban: &b, More: true}) })
		})
		return
	case OpAllows:
		s.list(ctx, c, func(w func(Response) error) error {
			return h.Allows(ctx, s.o.Now(), func(a AllowRecord) error { return w(Response{OK: true, Allow: &a, More: true}) })
		})
		return
	default:
		err = fmt.Errorf("%w: unknown operation %q", ErrInvalid, sanitize(req.Op, 32))
	}
	if err != nil {
		resp = Response{Error: s.handlerError(err)}
		s.log.Info("control: "+sanitize(req.Op, 16)+" not done", "target", target, "uid", peer.UID, "pid", peer.PID, "err", err)
	} else {
		resp.OK = true
		s.log.Info("control: "+req.Op, "target", target, "for", sanitize(req.For, 32), "uid", peer.UID, "pid", peer.PID)
	}
	s.answer(c, resp)
}

// errPeerGone ends a listing whose reader went away.
var errPeerGone = errors.New("control: the peer stopped reading")

// list streams a listing: one line per record as the handler yields it,
// then the closing line, or an error line when the handler fails before
// the first record (after it, the peer sees the listing cut short: no
// closing line).
func (s *Server) list(ctx context.Context, c *net.UnixConn, run func(write func(Response) error) error) {
	_ = c.SetWriteDeadline(time.Now().Add(s.o.HandleTimeout))
	n := 0
	err := run(func(r Response) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n++
		if !writeResponse(c, r) {
			return errPeerGone
		}
		return nil
	})
	switch {
	case err == nil:
		writeResponse(c, Response{OK: true})
	case errors.Is(err, errPeerGone):
	case n == 0:
		s.answer(c, Response{Error: s.handlerError(err)})
	default:
		s.log.Warn("control: listing cut short", "records", n, "err", err)
	}
}

// writeResponse writes one line; false when the peer is gone.
func writeResponse(w io.Writer, r Response) bool {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(Response{Error: &WireError{Code: CodeInternalError, Message: "control: encoding the answer: " + err.Error()}})
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err == nil
}
