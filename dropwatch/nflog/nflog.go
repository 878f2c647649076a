// Package nflog reads the packets sipsentry's firewall rules copy to an
// NFLOG group before dropping them (firewall.nflog_group), and hands each
// one, decoded, to a callback. It uses the kernel's netlink NFLOG interface
// through github.com/florianl/go-nflog.
//
// It must never block the kernel's side: the callback runs on the reading
// goroutine and must be quick; when userspace falls behind the kernel drops
// copies (the socket reports ENOBUFS), which is counted, never fatal. It
// never keeps a packet's bytes beyond the callback.
package nflog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	gonflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/sipsentry/sipsentry/dropwatch/packet"
)

// Prefixes the firewall's NFLOG rules carry (firewall/iptables: NFLOGPrefixBan,
// NFLOGPrefixGeo); the reason is the part after "sipsentry-".
const prefixOwn = "sipsentry-"

// Reasons a packet was dropped.
const (
	ReasonBan   = "ban"   // the source is banned
	ReasonGeo   = "geo"   // the source's country is not allowed
	ReasonOther = "other" // a rule that is not sipsentry's logged to the group
)

// CopySize is how many bytes of each packet are asked for; the rules'
// --nflog-size is the same, so the kernel copies no more.
const CopySize = 512

// Drop is one dropped packet. Packet.Payload is valid only during the
// callback.
type Drop struct {
	Reason string
	packet.Packet
}

// Options configure Run.
type Options struct {
	// Group is the NFLOG group (firewall.nflog_group); it must not be 0.
	Group uint16
	// NetNS is a file descriptor of the network namespace to read in;
	// 0 is the caller's namespace (the daemon's). Tests set it.
	NetNS int
	// ReadBuffer is the socket's receive buffer; default 4 MiB, enough for
	// several seconds of the rules' 1000 copies per second.
	ReadBuffer int
	// Overrun is called when the kernel reports lost copies (the socket
	// buffer overflowed); may be nil.
	Overrun func()
	// Malformed is called for a copy that does not decode as IP; may be nil.
	Malformed func(error)
	Log       *slog.Logger
}

// ErrGroup: Options.Group is 0.
var ErrGroup = errors.New("nflog: group 0 is not a group (firewall.nflog_group = 0 turns the copies off)")

// Run binds to the group and calls fn for every copied packet until ctx
// ends (then it returns nil) or the socket fails.
func Run(ctx context.Context, o Options, fn func(Drop)) error {
	if o.Group == 0 {
		return ErrGroup
	}
	if o.ReadBuffer <= 0 {
		o.ReadBuffer = 4 << 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	nf, err := gonflog.Open(&gonflog.Config{
		NetNS:    o.NetNS,
		Group:    o.Group,
		Copymode: gonflog.CopyPacket,
		Bufsize:  CopySize,
		// Batch up to 64 copies per netlink message, but never hold one
		// longer than 10 ms (Timeout is in 1/100 s): one message per copy
		// costs a syscall and a socket-buffer skb each, and a flood then
		// overruns the buffer long before the CPU is busy.
		QThresh: 64,
		Timeout: 1,
	})
	if err != nil {
		return fmt.Errorf("nflog: open netlink socket: %w (needs CAP_NET_ADMIN)", err)
	}
	defer nf.Close()
	if err := setReadBuffer(nf.Con, o.ReadBuffer); err != nil {
		o.Log.Warn("nflog: could not enlarge the socket buffer; copies may be lost under load", "bytes", o.ReadBuffer, "err", err)
	}
	// ENOBUFS is reported, not hidden: the kernel dropped copies.
	_ = nf.Con.SetOption(netlink.NoENOBUFS, false)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failed := make(chan error, 1)
	hook := func(a gonflog.Attribute) int {
		if a.Payload == nil {
			return 0
		}
		p, err := packet.Decode(*a.Payload)
		if err != nil {
			if o.Malformed != nil {
				o.Malformed(err)
			}
			return 0
		}
		d := Drop{Reason: ReasonOther, Packet: p}
		if a.Prefix != nil {
			d.Reason = reasonOf(*a.Prefix)
		}
		fn(d)
		return 0
	}
	onErr := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		if errors.Is(err, unix.ENOBUFS) {
			if o.Overrun != nil {
				o.Overrun()
			}
			return 0
		}
		var op *netlink.OpError
		if errors.As(err, &op) && (op.Timeout() || op.Temporary()) {
			return 0
		}
		select {
		case failed <- err:
		default:
		}
		return 1
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, onErr); err != nil {
		return fmt.Errorf("nflog: bind group %d: %w (is another program, e.g. ulogd, bound to it? set firewall.nflog_group to a free group)", o.Group, err)
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-failed:
		return fmt.Errorf("nflog: reading group %d: %w", o.Group, err)
	}
}

// reasonOf maps a rule's --nflog-prefix to a reason; the prefix may carry
// a trailing NUL or space from the kernel.
func reasonOf(prefix string) string {
	rest, ours := strings.CutPrefix(strings.TrimRight(prefix, "\x00 "), prefixOwn)
	if !ours {
		return ReasonOther
	}
	switch rest {
	case ReasonBan:
		return ReasonBan
	case ReasonGeo:
		return ReasonGeo
	}
	return ReasonOther
}

// setReadBuffer sets the receive buffer with SO_RCVBUFFORCE (allowed with
// CAP_NET_ADMIN, which reading NFLOG needs anyway): plain SO_RCVBUF is
// capped by net.core.rmem_max (208 KiB by default), a few hundred copies.
func setReadBuffer(c *netlink.Conn, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr != nil {
		return c.SetReadBuffer(n) // without the capability: as much as rmem_max allows
	}
	return nil
}
