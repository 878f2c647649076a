// Package pcap reads the classic libpcap file format (the recordings in
// shared/testdata/asterisk) and hands out each frame's IP packet. It is for
// tests and benchmarks only and must never be imported by production code.
package pcap

import (
	"encoding/binary"
	"fmt"
	"os"
)

// maxFrame bounds one record: a record header claiming more is corrupt.
const maxFrame = 1 << 18

// IPPackets returns the IP packet (from the IP header on) of every frame of
// the pcap file at path. It understands Ethernet (1), raw IP (101) and
// Linux cooked (113) link types.
func IPPackets(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("pcap: %s: too short for a file header", path)
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("pcap: %s: not a pcap file", path)
	}
	link := bo.Uint32(b[20:24])
	var out [][]byte
	for off := 24; off+16 <= len(b); {
		incl := int(bo.Uint32(b[off+8 : off+12]))
		off += 16
		if incl > maxFrame || off+incl > len(b) {
			return out, fmt.Errorf("pcap: %s: record at %d claims %d bytes", path, off-16, incl)
		}
		frame := b[off : off+incl]
		off += incl
		switch link {
		case 1: // Ethernet
			if len(frame) < 14 {
				continue
			}
			et, p := binary.BigEndian.Uint16(frame[12:14]), frame[14:]
			if et == 0x8100 && len(p) >= 4 { // one VLAN tag
				et, p = binary.BigEndian.Uint16(p[2:4]), p[4:]
			}
			if et == 0x0800 || et == 0x86dd {
				out = append(out, p)
			}
		case 101:
			out = append(out, frame)
		case 113:
			if len(frame) >= 16 {
				out = append(out, frame[16:])
			}
		default:
			return nil, fmt.Errorf("pcap: %s: link type %d not supported", path, link)
		}
	}
	return out, nil
}
