package control

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Peer is the kernel's view of the process at the other end of a
// connection, taken when it connected.
type Peer struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32 // supplementary groups (SO_PEERGROUPS); nil when the kernel cannot say
}

// maxPeerGroups is NGROUPS_MAX: the kernel never reports more.
const maxPeerGroups = 65536

// peerOf reads the peer's credentials from the socket.
func peerOf(c *net.UnixConn) (Peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Peer{}, fmt.Errorf("control: peer credentials: %w", err)
	}
	var p Peer
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			credErr = err
			return
		}
		p = Peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
		p.Groups = peerGroups(int(fd))
	}); err != nil {
		return Peer{}, fmt.Errorf("control: peer credentials: %w", err)
	}
	if credErr != nil {
		return Peer{}, fmt.Errorf("control: peer credentials (SO_PEERCRED): %w", credErr)
	}
	return p, nil
}

// peerGroups returns the peer's supplementary groups (Linux 4.13+), or nil.
// x/sys has no wrapper for this option, hence the raw getsockopt.
func peerGroups(fd int) []uint32 {
	buf := make([]uint32, 32)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == 0:
			return buf[:size/4]
		case errors.Is(errno, unix.ERANGE) && int(size/4) > len(buf) && size/4 <= maxPeerGroups:
			buf = make([]uint32, size/4)
		default:
			return nil
		}
	}
}

// Access says who, besides root, may use the socket.
type Access struct {
	// GroupSet enables Group: its members (primary or supplementary) may
	// read and act.
	GroupSet bool
	Group    uint32
}

// allows reports whether p may use the socket.
func (a Access) allows(p Peer) bool {
	if p.UID == 0 {
		return true
	}
	return a.GroupSet && (p.GID == a.Group || slices.Contains(p.Groups, a.Group))
}
