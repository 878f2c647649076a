package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// ErrNoDaemon: nothing serves the socket (no file, or nobody listening):
// the caller may act offline.
var ErrNoDaemon = errors.New("control: no daemon is listening")

// DefaultClientTimeout bounds one exchange when the context has no deadline.
const DefaultClientTimeout = 60 * time.Second

// Client talks to the daemon's control socket. It implements Handler; the
// uid arguments are ignored, because the server takes the uid from the
// kernel.
type Client struct {
	// Path of the socket; "" is DefaultPath.
	Path string
	// Timeout bounds one exchange when ctx has no deadline (0: DefaultClientTimeout).
	Timeout time.Duration
}

var _ Handler = (*Client)(nil)

// Ping connects and hangs up: nil when a daemon listens, an error matching
// ErrNoDaemon when none does.
func (c *Client) Ping(ctx context.Context) error {
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	return conn.Close()
}

func (c *Client) path() string {
	if c.Path == "" {
		return DefaultPath
	}
	return c.Path
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path())
	if err == nil {
		return conn, nil
	}
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w on %s", ErrNoDaemon, c.path())
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("%w: permission denied on %s: run as root (or as a member of control.group)", ErrUnauthorized, c.path())
	}
	return nil, fmt.Errorf("control: connecting to %s: %w", c.path(), err)
}

// Do sends req and calls each for every answer line until the last one.
// An error answer is returned as an error matching its sentinel.
func (c *Client) Do(ctx context.Context, req Request, each func(Response) error) error {
	req.V = Version
	line, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("control: encoding the request: %w", err)
	}
	if len(line) > MaxRequestBytes {
		return fmt.Errorf("%w: request longer than %d bytes", ErrInvalid, MaxRequestBytes)
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		t := c.Timeout
		if t <= 0 {
			t = DefaultClientTimeout
		}
		deadline = time.Now().Add(t)
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	// A server that refuses at once (busy) answers and hangs up before the
	// request is written: its answer is still read.
	_, werr := conn.Write(append(line, '\n'))
	br := bufio.NewReaderSize(conn, 4096)
	for {
		b, err := readLine(br, MaxResponseLineBytes)
		if err != nil && werr != nil {
			return c.ioError(ctx, "sending the request", werr)
		}
		if err != nil {
			return c.ioError(ctx, "reading the answer", err)
		}
		var resp Response
		if err := json.Unmarshal(b, &resp); err != nil {
			return fmt.Errorf("%w: the daemon's answer is not JSON: %v", ErrProtocol, err)
		}
		if resp.Error != nil {
			return resp.Error.Err()
		}
		if !resp.OK {
			return fmt.Errorf("%w: an answer that is neither ok nor an error", ErrProtocol)
		}
		if each != nil {
			if err := each(resp); err != nil {
				return err
			}
		}
		if !resp.More {
			return nil
		}
	}
}

func (c *Client) ioError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("control: %s: %w", what, ctx.Err())
	}
	// The connection's deadline is the context's: its timer may not have
	// fired yet when the read gives up.
	if _, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("control: %s: %w", what, context.DeadlineExceeded)
	}
	return fmt.Errorf("control: %s on %s: %w", what, c.path(), err)
}

func forText(d time.Duration) string {
	if d < 0 {
		return ""
	}
	return d.String()
}

// Ban asks the daemon to ban a.
func (c *Client) Ban(ctx context.Context, a netip.Addr, d time.Duration, reason string, _ uint32) (BanRecord, error) {
	var rec BanRecord
	err := c.Do(ctx, Request{Op: OpBan, Target: a.String(), For: forText(d), Text: reason}, func(r Response) error {
		if r.Ban != nil {
			rec = *r.Ban
		}
		return nil
	})
	return rec, err
}

// Unban asks the daemon to end a's ban.
func (c *Client) Unban(ctx context.Context, a netip.Addr, _ uint32) error {
	return c.Do(ctx, Request{Op: OpUnban, Target: a.String()}, nil)
}

// Allow asks the daemon to allow p.
func (c *Client) Allow(ctx context.Context, p netip.Prefix, d time.Duration, comment string, _ uint32) (AllowRecord, error) {
	var rec AllowRecord
	if d < 0 {
		d = 0
	}
	err := c.Do(ctx, Request{Op: OpAllow, Target: p.String(), For: d.String(), Text: comment}, func(r Response) error {
		if r.Allow != nil {
			rec = *r.Allow
		}
		return nil
	})
	return rec, err
}

// Disallow asks the daemon to remove p's allow entry.
func (c *Client) Disallow(ctx context.Context, p netip.Prefix, _ uint32) error {
	return c.Do(ctx, Request{Op: OpDisallow, Target: p.String()}, nil)
}

// Bans calls each for every ban of the daemon (now is the daemon's).
func (c *Client) Bans(ctx context.Context, _ time.Time, each func(BanRecord) error) error {
	return c.Do(ctx, Request{Op: OpBans}, func(r Response) error {
		if r.Ban == nil {
			return nil
		}
		return each(*r.Ban)
	})
}

// Allows calls each for every allow entry of the daemon.
func (c *Client) Allows(ctx context.Context, _ time.Time, each func(AllowRecord) error) error {
	return c.Do(ctx, Request{Op: OpAllows}, func(r Response) error {
		if r.Allow == nil {
			return nil
		}
		return each(*r.Allow)
	})
}
