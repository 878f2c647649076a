package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/user"
	"strconv"

	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/control"
)

// controlService serves the control socket (`sipsentry ban`, `bans`, ...)
// with the engine behind it. The socket is opened early, with the metrics
// listener, so a second daemon stops before touching the kernel; it serves
// once the engine has started.
type controlService struct {
	srv *control.Server
}

// openControl listens on control.socket with access for root and
// control.group.
func openControl(cfg config.Control, h control.Handler, log *slog.Logger) (*controlService, error) {
	access, err := controlAccess(cfg.Group)
	if err != nil {
		return nil, configError{err}
	}
	srv, err := control.Listen(control.ServerOptions{Path: cfg.Socket, Access: access, Handler: h, Logger: log})
	if err != nil {
		if errors.Is(err, control.ErrInUse) {
			return nil, fmt.Errorf("run: %w", err)
		}
		return nil, fmt.Errorf("run: control socket: %w", err)
	}
	return &controlService{srv: srv}, nil
}

// controlAccess resolves control.group: a group name, or a numeric gid.
func controlAccess(group string) (control.Access, error) {
	if group == "" {
		return control.Access{}, nil
	}
	if gid, err := strconv.ParseUint(group, 10, 32); err == nil {
		return control.Access{GroupSet: true, Group: uint32(gid)}, nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return control.Access{}, fmt.Errorf("control.group: no group %q on this host (create it with groupadd, or give a numeric gid): %v", group, err)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return control.Access{}, fmt.Errorf("control.group: group %q has gid %q, not a number", group, g.Gid)
	}
	return control.Access{GroupSet: true, Group: uint32(gid)}, nil
}

// Run serves until ctx ends, then removes the socket.
func (s *controlService) Run(ctx context.Context) error { return s.srv.Serve(ctx) }

// Close removes the socket of a service that never ran (an early return).
func (s *controlService) Close() error { return s.srv.Close() }
