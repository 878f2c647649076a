package iptables

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// Reading rules by netlink. iptables-nft keeps every rule in nf_tables;
// a dump of one chain is one request and no process. The rules are not
// decoded back into iptables syntax: each is reduced to a fingerprint of
// its expressions and comment, leaving out what changes by itself
// (counters, the state of a rate limit, the rule's handle). Verify
// compares the fingerprints with those recorded when the rules were last
// seen right in iptables' own words (Up, a repair, or a first check
// through `iptables -S`), so the text remains the authority.

// errNoNftables: the rules are not in nf_tables (iptables-legacy); the
// check falls back to `iptables -S`.
var errNoNftables = errors.New("iptables: rules not readable by nf_tables netlink")

// ruleFP is one rule's fingerprint; ours tells whether it carries
// sipsentry's jump comment.
type ruleFP struct {
	sum  [32]byte
	ours bool
}

// dumpRules returns the fingerprints of chain's rules in the filter table
// of family fam, in order. A missing chain is (nil, false, nil).
func (c *nlConn) dumpRules(fam, chain string) ([]ruleFP, bool, error) {
	proto := uint8(unix.NFPROTO_IPV4)
	if fam == "inet6" {
		proto = unix.NFPROTO_IPV6
	}
	c.seq++
	seq := c.seq
	b := c.out[:0]
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETRULE))
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_DUMP)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, proto, unix.NFNETLINK_V0, 0, 0)
	b = putAttr(b, unix.NFTA_RULE_TABLE, append([]byte(table), 0))
	b = putAttr(b, unix.NFTA_RULE_CHAIN, append([]byte(chain), 0))
	endMsg(b, 0)
	c.out = b[:0]
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, false, fmt.Errorf("iptables: netlink send: %w", err)
	}
	var out []ruleFP
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, false, fmt.Errorf("iptables: netlink rule dump of %s: %w", chain, err)
		}
		m := c.buf[:n]
		for len(m) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(m))
			typ := binary.NativeEndian.Uint16(m[4:])
			mseq := binary.NativeEndian.Uint32(m[8:])
			if l < unix.NLMSG_HDRLEN || l > len(m) {
				return nil, false, fmt.Errorf("iptables: netlink rule dump: bad message length %d", l)
			}
			msg := m[unix.NLMSG_HDRLEN:l]
			m = m[min(align4(l), len(m)):]
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_DONE:
				if len(out) == 0 {
					// A dump filtered on a missing chain is empty too.
					ok, err := c.chainExists(proto, chain)
					return nil, ok, err
				}
				return out, true, nil
			case unix.NLMSG_ERROR:
				if len(msg) < 4 {
					continue
				}
				errno := -int32(binary.NativeEndian.Uint32(msg))
				switch {
				case errno == 0:
					continue
				case errno == int32(unix.ENOENT):
					return nil, false, nil
				default:
					return nil, false, fmt.Errorf("iptables: netlink rule dump of %s: %w", chain, unix.Errno(errno))
				}
			case uint16(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWRULE):
				if len(msg) >= 4 {
					out = append(out, fingerprint(msg[4:]))
				}
			}
		}
	}
}

// chainExists asks nf_tables for chain in the filter table of proto.
func (c *nlConn) chainExists(proto uint8, chain string) (bool, error) {
	c.seq++
	seq := c.seq
	b := c.out[:0]
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, uint16(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_GETCHAIN))
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = append(b, proto, unix.NFNETLINK_V0, 0, 0)
	b = putAttr(b, unix.NFTA_CHAIN_TABLE, append([]byte(table), 0))
	b = putAttr(b, unix.NFTA_CHAIN_NAME, append([]byte(chain), 0))
	endMsg(b, 0)
	c.out = b[:0]
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return false, fmt.Errorf("iptables: netlink send: %w", err)
	}
	found := false
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("iptables: netlink get chain %s: %w", chain, err)
		}
		m := c.buf[:n]
		for len(m) >= unix.NLMSG_HDRLEN {
			l := int(binary.NativeEndian.Uint32(m))
			typ := binary.NativeEndian.Uint16(m[4:])
			mseq := binary.NativeEndian.Uint32(m[8:])
			if l < unix.NLMSG_HDRLEN || l > len(m) {
				return false, fmt.Errorf("iptables: netlink get chain: bad message length %d", l)
			}
			msg := m[unix.NLMSG_HDRLEN:l]
			m = m[min(align4(l), len(m)):]
			if mseq != seq {
				continue
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(msg) < 4 {
					return found, nil
				}
				switch errno := -int32(binary.NativeEndian.Uint32(msg)); errno {
				case 0:
					return found, nil
				case int32(unix.ENOENT):
					return false, nil
				default:
					return false, fmt.Errorf("iptables: netlink get chain %s: %w", chain, unix.Errno(errno))
				}
			case uint16(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWCHAIN):
				found = true
			}
		}
	}
}

// jumpUserdata is how iptables-nft stores "-m comment --comment sipsentry"
// in a rule's user data: type 0 (comment), length, the string with its NUL.
var jumpUserdata = append([]byte{0, byte(len(jumpComment) + 1)}, append([]byte(jumpComment), 0)...)

func fingerprint(b []byte) ruleFP {
	h := sha256.New()
	var fp ruleFP
	attrs(b, func(typ, _ uint16, val []byte) {
		switch typ {
		case unix.NFTA_RULE_EXPRESSIONS:
			h.Write([]byte("E"))
			attrs(val, func(typ, _ uint16, elem []byte) {
				if typ != unix.NFTA_LIST_ELEM {
					return
				}
				var name string
				var data []byte
				attrs(elem, func(typ, _ uint16, v []byte) {
					switch typ {
					case unix.NFTA_EXPR_NAME:
						name = cString(v)
					case unix.NFTA_EXPR_DATA:
						data = v
					}
				})
				h.Write([]byte(name))
				h.Write([]byte{0})
				switch name {
				case "counter", "limit":
					// Packet counts and a rate limit's tokens move by themselves.
				case "match":
					writeMatch(h, data, &fp)
				default:
					h.Write(data)
				}
			})
		case unix.NFTA_RULE_USERDATA:
			h.Write([]byte("U"))
			h.Write(val)
			if bytes.Contains(val, jumpUserdata) {
				fp.ours = true
			}
		}
	})
	copy(fp.sum[:], h.Sum(nil))
	return fp
}

// writeMatch hashes an xtables match kept as is by iptables-nft, leaving
// out the limit match's kernel state.
func writeMatch(h interface{ Write([]byte) (int, error) }, data []byte, fp *ruleFP) {
	var name string
	var info []byte
	attrs(data, func(typ, _ uint16, v []byte) {
		switch typ {
		case unix.NFTA_MATCH_NAME:
			name = cString(v)
		case unix.NFTA_MATCH_INFO:
			info = v
		}
	})
	h.Write([]byte(name))
	if name == "limit" {
		return
	}
	if name == "comment" && bytes.HasPrefix(info, append([]byte(jumpComment), 0)) {
		fp.ours = true
	}
	h.Write(info)
}

// ourJumps keeps the fingerprints of sipsentry's INPUT rules, sorted (the
// order among the admin's rules is not compared).
func ourJumps(all []ruleFP) [][32]byte {
	var out [][32]byte
	for _, r := range all {
		if r.ours {
			out = append(out, r.sum)
		}
	}
	slices.SortFunc(out, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	return out
}

func sums(rs []ruleFP) [][32]byte {
	out := make([][32]byte, len(rs))
	for i, r := range rs {
		out[i] = r.sum
	}
	return out
}
