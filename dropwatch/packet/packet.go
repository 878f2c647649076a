// Package packet decodes the network and transport headers of one packet
// as the kernel's NFLOG hands it over: starting at the IPv4 or IPv6 header,
// possibly cut short (--nflog-size). It gives the source, the protocol, the
// ports and the transport payload.
//
// Every byte is hostile. It must never allocate from a length the packet
// claims, never read past the bytes it was given, and never panic: a
// length field that points past the end only shortens the payload.
package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Protocol numbers of the transports decoded (IANA).
const (
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMP   uint8 = 1
	ProtoICMPv6 uint8 = 58
)

// Packet is one decoded packet. Payload aliases the input.
type Packet struct {
	Src, Dst netip.Addr
	Proto    uint8 // IANA protocol number of the transport
	SrcPort  uint16
	DstPort  uint16 // 0 for protocols without ports
	// Payload is the transport payload as far as it was captured.
	Payload []byte
	// Truncated: the capture ended before the length the headers claim.
	Truncated bool
	// Fragment: a non-first IP fragment; it has no transport header.
	Fragment bool
}

// ProtoName returns "udp", "tcp", "icmp", "icmpv6" or "other".
func ProtoName(p uint8) string {
	switch p {
	case ProtoUDP:
		return "udp"
	case ProtoTCP:
		return "tcp"
	case ProtoICMP:
		return "icmp"
	case ProtoICMPv6:
		return "icmpv6"
	}
	return "other"
}

// Sentinel errors.
var (
	// ErrShort: fewer bytes than the smallest header.
	ErrShort = errors.New("packet: too short for an IP header")
	// ErrVersion: neither IPv4 nor IPv6.
	ErrVersion = errors.New("packet: not an IPv4 or IPv6 packet")
	// ErrHeader: a header length field is impossible.
	ErrHeader = errors.New("packet: malformed header")
)

// Decode reads b, which starts at the IP header. Transport fields are zero
// when the transport header was not captured whole.
func Decode(b []byte) (Packet, error) {
	if len(b) < 1 {
		return Packet{}, ErrShort
	}
	switch b[0] >> 4 {
	case 4:
		return decode4(b)
	case 6:
		return decode6(b)
	}
	return Packet{}, ErrVersion
}

func decode4(b []byte) (Packet, error) {
	if len(b) < 20 {
		return Packet{}, ErrShort
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || ihl > len(b) {
		return Packet{}, ErrHeader
	}
	p := Packet{
		Src:   netip.AddrFrom4([4]byte(b[12:16])),
		Dst:   netip.AddrFrom4([4]byte(b[16:20])),
		Proto: b[9],
	}
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total < ihl {
		return p, ErrHeader
	}
	end := min(total, len(b))
	p.Truncated = total > len(b)
	if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
		p.Fragment = true
		return p, nil
	}
	transport(&p, b[ihl:end])
	return p, nil
}

// extension headers of IPv6 that carry a next header and a length in
// 8-octet units after the first 8 (RFC 8200 section 4).
func ipv6Ext(nh uint8) bool {
	switch nh {
	case 0, 43, 60, 135, 139, 140: // hop-by-hop, routing, destination, mobility, HIP, shim6
		return true
	}
	return false
}

// maxExtHeaders bounds the walk over IPv6 extension headers; real packets
// carry a few, and a chain of hundreds is an attack on the walk itself.
const maxExtHeaders = 8

func decode6(b []byte) (Packet, error) {
	if len(b) < 40 {
		return Packet{}, ErrShort
	}
	p := Packet{
		Src: netip.AddrFrom16([16]byte(b[8:24])),
		Dst: netip.AddrFrom16([16]byte(b[24:40])),
	}
	plen := int(binary.BigEndian.Uint16(b[4:6]))
	end := min(40+plen, len(b))
	p.Truncated = 40+plen > len(b)
	nh, off := b[6], 40
	for range maxExtHeaders {
		switch {
		case ipv6Ext(nh):
			if off+8 > end {
				p.Proto = nh
				p.Truncated = true
				return p, nil
			}
			next, l := b[off], (int(b[off+1])+1)*8
			nh, off = next, off+l
		case nh == 44: // fragment header: fixed 8 bytes
			if off+8 > end {
				p.Proto = nh
				p.Truncated = true
				return p, nil
			}
			if binary.BigEndian.Uint16(b[off+2:off+4])&0xfff8 != 0 {
				p.Proto = b[off]
				p.Fragment = true
				return p, nil
			}
			nh, off = b[off], off+8
		default:
			p.Proto = nh
			if off > end {
				p.Truncated = true
				return p, nil
			}
			transport(&p, b[off:end])
			return p, nil
		}
	}
	p.Proto = nh
	return p, ErrHeader
}

// transport fills ports and payload from t, the bytes after the IP headers.
func transport(p *Packet, t []byte) {
	switch p.Proto {
	case ProtoUDP:
		if len(t) < 8 {
			p.Truncated = true
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(t[0:2])
		p.DstPort = binary.BigEndian.Uint16(t[2:4])
		ulen := int(binary.BigEndian.Uint16(t[4:6]))
		end := len(t)
		if ulen >= 8 && ulen < end {
			end = ulen // padding after the datagram is not payload
		}
		p.Payload = t[8:end]
	case ProtoTCP:
		if len(t) < 20 {
			if len(t) >= 4 {
				p.SrcPort = binary.BigEndian.Uint16(t[0:2])
				p.DstPort = binary.BigEndian.Uint16(t[2:4])
			}
			p.Truncated = true
			return
		}
		p.SrcPort = binary.BigEndian.Uint16(t[0:2])
		p.DstPort = binary.BigEndian.Uint16(t[2:4])
		doff := int(t[12]>>4) * 4
		if doff < 20 || doff > len(t) {
			p.Truncated = true
			return
		}
		p.Payload = t[doff:]
	}
}
