package iptables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ctDeleteBoth deletes the conntrack entry of one flow, looked up by its
// tuple in both directions (remote → local as the engine saw it, and the
// reverse for a flow the PBX opened), in one sendmsg without
// acknowledgements: the kernel handles both requests before sendmsg
// returns and answers only the ones that fail, so the flow is gone when
// this returns and a non-blocking read collects the refusals. "No such
// entry" for both is not an error (the flow had ended or never existed).
// The netlink package's request cost a getsockname, a send and a blocking
// read of the ack per direction: 2 to 4 syscalls a ban where this is 2
// (BenchmarkDropFlowAbsent).
func (b *Backend) ctDeleteBoth(proto uint8, remote, local netip.AddrPort) error {
	b.ctMu.Lock()
	defer b.ctMu.Unlock()
	c := b.ctConn
	if c == nil {
		return errors.New("the backend is closed")
	}
	c.out = c.out[:0]
	c.seq++
	first := c.seq
	c.out = appendCTDelete(c.out, first, proto, remote, local)
	c.seq++
	c.out = appendCTDelete(c.out, c.seq, proto, local, remote)
	if err := unix.Sendto(c.fd, c.out, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	var refused error
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK) {
			return refused
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for m := c.buf[:n]; len(m) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(m))
			if l < unix.NLMSG_HDRLEN || l > len(m) {
				break
			}
			typ, seq := binary.NativeEndian.Uint16(m[4:]), binary.NativeEndian.Uint32(m[8:])
			if typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4 && (seq == first || seq == first+1) {
				if errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(m[unix.NLMSG_HDRLEN:]))); errno != 0 && errno != syscall.ENOENT && refused == nil {
					refused = errno
				}
			}
			m = m[align4(l):]
		}
	}
}

// appendCTDelete appends a conntrack delete request for the flow whose
// original tuple is src → dst.
func appendCTDelete(b []byte, seq uint32, proto uint8, src, dst netip.AddrPort) []byte {
	fam, srcT, dstT := uint8(unix.AF_INET), uint16(nl.CTA_IP_V4_SRC), uint16(nl.CTA_IP_V4_DST)
	if src.Addr().Is6() {
		fam, srcT, dstT = unix.AF_INET6, nl.CTA_IP_V6_SRC, nl.CTA_IP_V6_DST
	}
	at := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set by endMsg
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_DELETE))
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel's
	b = append(b, fam, nl.NFNETLINK_V0, 0, 0)
	b, tuple := beginNested(b, nl.CTA_TUPLE_ORIG)
	b, ip := beginNested(b, nl.CTA_TUPLE_IP)
	b = putAddrAttr(b, srcT, src.Addr())
	b = putAddrAttr(b, dstT, dst.Addr())
	endNested(b, ip)
	b, pr := beginNested(b, nl.CTA_TUPLE_PROTO)
	b = putAttr(b, nl.CTA_PROTO_NUM, []byte{proto})
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], src.Port())
	b = putAttr(b, nl.CTA_PROTO_SRC_PORT, port[:])
	binary.BigEndian.PutUint16(port[:], dst.Port())
	b = putAttr(b, nl.CTA_PROTO_DST_PORT, port[:])
	endNested(b, pr)
	endNested(b, tuple)
	endMsg(b, at)
	return b
}

func putAddrAttr(b []byte, typ uint16, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return putAttr(b, typ, v[:])
	}
	v := a.As16()
	return putAttr(b, typ, v[:])
}
