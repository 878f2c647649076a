package iptables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/sipsentry/sipsentry/firewall"
)

// This file speaks ipset's netlink protocol directly for the two bulk
// paths where the netlink library's one-request-per-call API and its
// per-entry allocations cost too much: reading a whole set (Verify reads
// 100k bans every few seconds) and adding or deleting many entries in few
// system calls (repair and BulkLoad). Everything read is from the kernel,
// but lengths are still checked before each slice.

// nlBatchBytes is how many bytes of requests go into one sendmsg: about a
// thousand adds, well under the socket's send buffer.
const nlBatchBytes = 64 << 10

const (
	nlCmdAdd = nl.IPSET_CMD_ADD
	nlCmdDel = nl.IPSET_CMD_DEL
)

// nlConn is a raw NETLINK_NETFILTER socket of the backend's own.
type nlConn struct {
	fd  int
	seq uint32
	buf []byte // receive buffer
	out []byte // requests being batched
}

// openNLConn opens a socket for dumps and batches (a 1 MiB receive buffer,
// room for a 64 KiB batch).
func openNLConn() (*nlConn, error) { return openNLConnSized(1<<20, nlBatchBytes+4096) }

// openNLRequestConn opens a socket for single requests whose only answers
// are refusals (an add, a conntrack delete): small buffers, as each one is
// held for the daemon's life.
func openNLRequestConn() (*nlConn, error) { return openNLConnSized(16<<10, 1024) }

func openNLConnSized(bufSize, outSize int) (*nlConn, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Error replies carry only the header of the failed request, not the
	// request itself: a failed batch cannot overflow the receive buffer.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	// A dump fills up to 32 KiB per message; a few MiB keep a large
	// dump from stalling on a slow reader (FORCE needs CAP_NET_ADMIN,
	// which the backend has).
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	return &nlConn{fd: fd, buf: make([]byte, bufSize), out: make([]byte, 0, outSize)}, nil
}

func (c *nlConn) close() {
	if c != nil && c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// ---- encoding

func align4(n int) int { return (n + 3) &^ 3 }

func putAttr(b []byte, typ uint16, val []byte) []byte {
	l := 4 + len(val)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, val...)
	for i := l; i < align4(l); i++ {
		b = append(b, 0)
	}
	return b
}

// beginNested starts a nested attribute; endNested writes its length.
func beginNested(b []byte, typ uint16) ([]byte, int) {
	at := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ|unix.NLA_F_NESTED)
	return b, at
}

func endNested(b []byte, at int) {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
}

// beginMsg appends a netlink + nfgenmsg header for an ipset command and
// the protocol and set name attributes; endMsg writes the length.
func (c *nlConn) beginMsg(b []byte, cmd int, flags uint16, name string) ([]byte, int, uint32) {
	c.seq++
	at := len(b)
	b = binary.NativeEndian.AppendUint32(b, 0) // length, set by endMsg
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.NFNL_SUBSYS_IPSET<<8|cmd))
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, c.seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel's
	b = append(b, unix.AF_INET, nl.NFNETLINK_V0, 0, 0)
	b = putAttr(b, nl.IPSET_ATTR_PROTOCOL, []byte{nl.IPSET_PROTOCOL})
	nb := make([]byte, 0, 32)
	nb = append(append(nb, name...), 0)
	b = putAttr(b, nl.IPSET_ATTR_SETNAME, nb)
	return b, at, c.seq
}

func endMsg(b []byte, at int) { binary.NativeEndian.PutUint32(b[at:], uint32(len(b)-at)) }

// appendEntry appends one add (or del) request for e to the batch. The
// entry was validated (firewall.Validate) and fits s.
func (c *nlConn) appendEntry(cmd int, s setSpec, e firewall.Entry) uint32 {
	b, at, seq := c.beginMsg(c.out, cmd, unix.NLM_F_REQUEST, s.name)
	b, data := beginNested(b, nl.IPSET_ATTR_DATA)
	b, ip := beginNested(b, nl.IPSET_ATTR_IP)
	a := e.Prefix.Addr()
	if a.Is4() {
		v := a.As4()
		b = putAttr(b, nl.IPSET_ATTR_IPADDR_IPV4|nl.NLA_F_NET_BYTEORDER, v[:])
	} else {
		v := a.As16()
		b = putAttr(b, nl.IPSET_ATTR_IPADDR_IPV6|nl.NLA_F_NET_BYTEORDER, v[:])
	}
	endNested(b, ip)
	if s.typ == "hash:net" {
		b = putAttr(b, nl.IPSET_ATTR_CIDR, []byte{uint8(e.Prefix.Bits())})
	}
	if cmd == nl.IPSET_CMD_ADD {
		if s.timeout {
			t := uint32(0)
			if e.Timeout > 0 {
				t = timeoutSeconds(e.Timeout)
			}
			b = putAttr(b, nl.IPSET_ATTR_TIMEOUT|nl.NLA_F_NET_BYTEORDER, binary.BigEndian.AppendUint32(nil, t))
		}
		if s.comment && e.Comment != "" {
			cb := make([]byte, 0, len(e.Comment)+1)
			b = putAttr(b, nl.IPSET_ATTR_COMMENT, append(append(cb, e.Comment...), 0))
		}
	}
	endNested(b, data)
	endMsg(b, at)
	c.out = b
	return seq
}

// ---- batches

// nlOp is one entry sent in the current batch, to name it in an error.
type nlOp struct {
	seq   uint32
	set   string
	entry netip.Prefix
}

// batch collects add and delete requests and sends them nlBatchBytes at a
// time, without asking for acknowledgements: the kernel answers only the
// requests that fail, and it handles a whole sendmsg before returning, so
// the failures of a chunk are read right after it is sent.
type batch struct {
	c     *nlConn
	cmd   int
	ops   []nlOp
	count int
	err   error
}

func (c *nlConn) newBatch(cmd int) *batch {
	bt := &batch{}
	bt.reset(c, cmd)
	return bt
}

// reset makes bt a new, empty batch on c (reusing its slices).
func (bt *batch) reset(c *nlConn, cmd int) {
	c.out = c.out[:0]
	*bt = batch{c: c, cmd: cmd, ops: bt.ops[:0]}
}

func (bt *batch) put(s setSpec, e firewall.Entry) error {
	if bt.err != nil {
		return bt.err
	}
	seq := bt.c.appendEntry(bt.cmd, s, e)
	bt.ops = append(bt.ops, nlOp{seq: seq, set: s.name, entry: e.Prefix})
	bt.count++
	if len(bt.c.out) >= nlBatchBytes {
		return bt.flush()
	}
	return nil
}

func (bt *batch) flush() error {
	if bt.err != nil || len(bt.c.out) == 0 {
		return bt.err
	}
	c := bt.c
	if err := unix.Sendto(c.fd, c.out, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		bt.err = fmt.Errorf("iptables: netlink send: %w", err)
		return bt.err
	}
	c.out = c.out[:0]
	// Read the failures of this chunk (nothing when all went in).
	for bt.err == nil {
		n, _, err := unix.Recvfrom(c.fd, c.buf, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK) {
			break
		}
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			bt.err = fmt.Errorf("iptables: netlink receive: %w", err)
			break
		}
		bt.readErrors(c.buf[:n])
	}
	bt.ops = bt.ops[:0]
	return bt.err
}

func (bt *batch) readErrors(b []byte) {
	for len(b) >= unix.NLMSG_HDRLEN && bt.err == nil {
		l := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		seq := binary.NativeEndian.Uint32(b[8:])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return
		}
		if typ == unix.NLMSG_ERROR && l >= unix.NLMSG_HDRLEN+4 {
			errno := -int32(binary.NativeEndian.Uint32(b[unix.NLMSG_HDRLEN:]))
			if errno != 0 {
				bt.fail(seq, errno)
			}
		}
		b = b[align4(l):]
	}
}

func (bt *batch) fail(seq uint32, errno int32) {
	var op nlOp
	found := false
	for _, o := range bt.ops {
		if o.seq == seq {
			op, found = o, true
			break
		}
	}
	if !found {
		return // a late answer to an earlier request (e.g. a failed dump's)
	}
	if bt.cmd == nl.IPSET_CMD_DEL && errno == nl.IPSET_ERR_EXIST {
		return // not in the set: nothing to delete
	}
	verb := "add"
	if bt.cmd == nl.IPSET_CMD_DEL {
		verb = "delete"
	}
	var err error = syscall.Errno(errno)
	if errno >= nl.IPSET_ERR_PRIVATE {
		err = nl.IPSetError(uintptr(errno))
	}
	bt.err = nlErrorFor(verb, op.set, op.entry, err)
}

// nlErrorFor words a kernel refusal like the single-entry path does.
func nlErrorFor(verb, name string, p netip.Prefix, err error) error {
	var ie nl.IPSetError
	if errors.As(err, &ie) && int(ie) == nl.IPSET_ERR_TYPE_SPECIFIC { // IPSET_ERR_HASH_FULL
		return fmt.Errorf("%w: %s %s: ipset %s reached its maxelem", firewall.ErrSetFull, verb, p, name)
	}
	if errors.Is(err, syscall.ENOENT) || (errors.As(err, &ie) && int(ie) == nl.IPSET_ERR_PROTOCOL) {
		return fmt.Errorf("iptables: %s %s: ipset %s is missing (%v): run `sipsentry firewall up` first", verb, p, name, err)
	}
	return fmt.Errorf("iptables: %s %s in ipset %s: %w", verb, p, name, err)
}

// ---- dump

// memberKey is a set member in a form that hashes fast: the address's 16
// bytes (IPv4 in the low word) and the prefix length.
type memberKey struct {
	hi, lo uint64
	bits   uint8
}

func keyOf(p netip.Prefix) memberKey {
	a := p.Addr()
	if a.Is4() {
		v := a.As4()
		return memberKey{lo: uint64(binary.BigEndian.Uint32(v[:])), bits: uint8(p.Bits())}
	}
	v := a.As16()
	return memberKey{hi: binary.BigEndian.Uint64(v[:8]), lo: binary.BigEndian.Uint64(v[8:]), bits: uint8(p.Bits())}
}

func (k memberKey) prefix(v4 bool) netip.Prefix {
	if v4 {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], uint32(k.lo))
		return netip.PrefixFrom(netip.AddrFrom4(a), int(k.bits))
	}
	var a [16]byte
	binary.BigEndian.PutUint64(a[:8], k.hi)
	binary.BigEndian.PutUint64(a[8:], k.lo)
	return netip.PrefixFrom(netip.AddrFrom16(a), int(k.bits))
}

// kernelSet is one kernel set as a dump read it: header and members in
// dump (hash) order. Members are compact keys, not maps: a check sorts
// both sides and walks them together, which for 100k bans costs a few
// milliseconds where map probes cost tens (cache misses).
type kernelSet struct {
	exists bool
	header setHeader
	m4     []member4
	m6     []member6
}

// member4 is an IPv4 member: address << 8 | prefix length, and seconds
// left (0: permanent).
type member4 struct {
	k uint64
	t uint32
}

type member6 struct {
	k memberKey
	t uint32
}

func key4(p netip.Prefix) uint64 {
	a := p.Addr().As4()
	return uint64(binary.BigEndian.Uint32(a[:]))<<8 | uint64(p.Bits())
}

func prefix4(k uint64) netip.Prefix {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], uint32(k>>8))
	return netip.PrefixFrom(netip.AddrFrom4(a), int(k&0xff))
}

func (ks *kernelSet) size() int { return len(ks.m4) + len(ks.m6) }

// dumpSet reads set name's header and members, into the maps of reuse
// (cleared first) when it is not nil. A missing set is exists == false,
// not an error.
func (c *nlConn) dumpSet(name string, reuse *kernelSet) (kernelSet, error) {
	return c.list(name, reuse, false)
}

// ipsetFlagListHeader asks a list for the set's header alone
// (IPSET_FLAG_LIST_HEADER, what `ipset list -t` sends).
const ipsetFlagListHeader = 1 << 2

// dumpHeader reads set name's header (type, options, number of entries,
// memory) without its members.
func (c *nlConn) dumpHeader(name string) (kernelSet, error) {
	return c.list(name, nil, true)
}

func (c *nlConn) list(name string, reuse *kernelSet, headerOnly bool) (kernelSet, error) {
	ks := kernelSet{header: setHeader{Name: name}}
	if reuse != nil {
		ks.m4, ks.m6 = reuse.m4[:0], reuse.m6[:0]
	}
	req, at, seq := c.beginMsg(c.out[:0], nl.IPSET_CMD_LIST, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_DUMP, name)
	if headerOnly {
		req = putAttr(req, nl.IPSET_ATTR_FLAGS|nl.NLA_F_NET_BYTEORDER, binary.BigEndian.AppendUint32(nil, ipsetFlagListHeader))
	}
	endMsg(req, at)
	c.out = req[:0]
	if err := unix.Sendto(c.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return ks, fmt.Errorf("iptables: netlink send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return ks, fmt.Errorf("iptables: netlink dump of %s: %w", name, err)
		}
		done, err := ks.parse(c.buf[:n], seq)
		if err != nil {
			return ks, err
		}
		if done {
			return ks, nil
		}
	}
}

// parse reads one datagram of a dump; done at NLMSG_DONE or an error.
func (ks *kernelSet) parse(b []byte, seq uint32) (bool, error) {
	for len(b) >= unix.NLMSG_HDRLEN {
		l := int(binary.NativeEndian.Uint32(b))
		typ := binary.NativeEndian.Uint16(b[4:])
		mseq := binary.NativeEndian.Uint32(b[8:])
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return true, fmt.Errorf("iptables: netlink dump of %s: bad message length %d", ks.header.Name, l)
		}
		msg := b[unix.NLMSG_HDRLEN:l]
		next := b[min(align4(l), len(b)):]
		b = next
		if mseq != seq {
			continue // a late answer to an earlier request
		}
		switch typ {
		case unix.NLMSG_DONE:
			if len(msg) >= 4 {
				if errno := -int32(binary.NativeEndian.Uint32(msg)); errno != 0 {
					return true, ks.dumpErr(errno)
				}
			}
			return true, nil
		case unix.NLMSG_ERROR:
			if len(msg) >= 4 {
				if errno := -int32(binary.NativeEndian.Uint32(msg)); errno != 0 {
					return true, ks.dumpErr(errno)
				}
			}
			continue // an ACK
		}
		if typ != uint16(unix.NFNL_SUBSYS_IPSET<<8|nl.IPSET_CMD_LIST) || len(msg) < 4 {
			continue
		}
		ks.exists = true
		ks.parseList(msg[4:])
	}
	return false, nil
}

func (ks *kernelSet) dumpErr(errno int32) error {
	if errno == int32(unix.ENOENT) {
		ks.exists = false
		return nil
	}
	var err error = syscall.Errno(errno)
	if errno >= nl.IPSET_ERR_PRIVATE {
		err = nl.IPSetError(uintptr(errno))
	}
	return fmt.Errorf("iptables: netlink dump of ipset %s: %w", ks.header.Name, err)
}

// attrs calls f for each attribute of b (type without flag bits).
func attrs(b []byte, f func(typ uint16, flags uint16, val []byte)) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:])
		if l < 4 || l > len(b) {
			return
		}
		f(t&nl.NLA_TYPE_MASK, t&^nl.NLA_TYPE_MASK, b[4:l])
		b = b[min(align4(l), len(b)):]
	}
}

func (ks *kernelSet) parseList(b []byte) {
	attrs(b, func(typ, _ uint16, val []byte) {
		switch typ {
		case nl.IPSET_ATTR_TYPENAME:
			ks.header.Type = cString(val)
		case nl.IPSET_ATTR_FAMILY:
			if len(val) > 0 {
				ks.header.Family = map[uint8]string{unix.AF_INET: "inet", unix.AF_INET6: "inet6"}[val[0]]
			}
		case nl.IPSET_ATTR_DATA:
			ks.parseHeader(val)
		case nl.IPSET_ATTR_ADT:
			if ks.m4 == nil && ks.header.Family == "inet" {
				ks.m4 = make([]member4, 0, ks.header.Entries)
			}
			ks.parseMembers(val)
		}
	})
}

func (ks *kernelSet) parseHeader(b []byte) {
	attrs(b, func(typ, _ uint16, val []byte) {
		switch typ {
		case nl.IPSET_ATTR_TIMEOUT:
			ks.header.Timeout = true
		case nl.IPSET_ATTR_CADT_FLAGS:
			if len(val) == 4 && binary.BigEndian.Uint32(val)&nl.IPSET_FLAG_WITH_COMMENT != 0 {
				ks.header.Comment = true
			}
		case nl.IPSET_ATTR_MAXELEM:
			if len(val) == 4 {
				ks.header.MaxElem = int(binary.BigEndian.Uint32(val))
			}
		case nl.IPSET_ATTR_ELEMENTS:
			if len(val) == 4 {
				ks.header.Entries = int(binary.BigEndian.Uint32(val))
			}
		case nl.IPSET_ATTR_MEMSIZE:
			if len(val) == 4 {
				ks.header.Memory = int(binary.BigEndian.Uint32(val))
			}
		case nl.IPSET_ATTR_REFERENCES:
			if len(val) == 4 {
				ks.header.Refs = int(binary.BigEndian.Uint32(val))
			}
		}
	})
}

// parseMembers reads the members of one dump message: the hot loop of a
// check (100k members), written without callbacks.
func (ks *kernelSet) parseMembers(b []byte) {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) & nl.NLA_TYPE_MASK
		if l < 4 || l > len(b) {
			return
		}
		if t == nl.IPSET_ATTR_DATA {
			ks.parseMember(b[4:l])
		}
		b = b[min(align4(l), len(b)):]
	}
}

func (ks *kernelSet) parseMember(b []byte) {
	var k memberKey
	var timeout uint32
	bits := -1
	ok, v4 := false, false
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b))
		t := binary.NativeEndian.Uint16(b[2:]) & nl.NLA_TYPE_MASK
		if l < 4 || l > len(b) {
			return
		}
		val := b[4:l]
		switch t {
		case nl.IPSET_ATTR_IP:
			// One nested address attribute.
			if len(val) >= 4 {
				il := int(binary.NativeEndian.Uint16(val))
				it := binary.NativeEndian.Uint16(val[2:]) & nl.NLA_TYPE_MASK
				if il <= len(val) {
					a := val[4:il]
					switch {
					case it == nl.IPSET_ATTR_IPADDR_IPV4 && len(a) == 4:
						k.lo, k.bits, ok, v4 = uint64(binary.BigEndian.Uint32(a)), 32, true, true
					case it == nl.IPSET_ATTR_IPADDR_IPV6 && len(a) == 16:
						k.hi, k.lo, k.bits, ok = binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:]), 128, true
					}
				}
			}
		case nl.IPSET_ATTR_CIDR:
			if len(val) > 0 {
				bits = int(val[0])
			}
		case nl.IPSET_ATTR_TIMEOUT:
			if len(val) == 4 {
				timeout = binary.BigEndian.Uint32(val)
			}
		}
		b = b[min(align4(l), len(b)):]
	}
	if !ok {
		return
	}
	if bits >= 0 {
		k.bits = uint8(bits)
	}
	if v4 {
		ks.m4 = append(ks.m4, member4{k: k.lo<<8 | uint64(k.bits), t: timeout})
	} else {
		ks.m6 = append(ks.m6, member6{k: k, t: timeout})
	}
}

func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
