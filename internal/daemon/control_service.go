package daemon

import (
	"context"
	"errors"
	"fmt"
	"os/user"
	"strconv"

	"github.com/sipsentry/sipsentry/internal/control"
)

// controlService serves the control socket (`sipsentry ban`, `bans`, ...)
// with the engine behind it. The socket is opened early, next to the
// metrics listener, so a second daemon stops before touching the kernel;
// it serves once Run is called, after the engine has started. A replay has
// no control socket: it is a one-shot over a capture.
type controlService struct {
	d   *daemon
	h   *controlHandler
	srv *control.Server // nil: disabled
}

// newControlService listens on control.socket with access for root and
// control.group.
func newControlService(d *daemon, replay bool) (*controlService, error) {
	s := &controlService{d: d, h: &controlHandler{}}
	if replay {
		return s, nil
	}
	access, err := controlAccess(d.cfg.Control.Group)
	if err != nil {
		return nil, configError{err}
	}
	s.srv, err = control.Listen(control.ServerOptions{Path: d.cfg.Control.Socket, Access: access, Handler: s.h, Logger: d.log})
	if err != nil {
		if errors.Is(err, control.ErrInUse) {
			return nil, fmt.Errorf("run: %w", err)
		}
		return nil, fmt.Errorf("run: control socket: %w", err)
	}
	return s, nil
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

// Run hands the started engine to the handler, then serves until ctx ends
// and removes the socket. Connections made before wait in the backlog.
func (s *controlService) Run(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	s.h.eng, s.h.geo, s.h.enforce = s.d.eng, s.d.geo, s.d.cfg.Firewall.Mode == "enforce"
	s.h.probations = s.d.probationEntries
	s.d.log.Info("run: control socket ready", "socket", s.srv.Path())
	return s.srv.Serve(ctx)
}

// Close removes the socket of a service that never ran (an early return).
func (s *controlService) Close() error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}
