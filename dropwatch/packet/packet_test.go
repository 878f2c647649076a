package packet_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/sipsentry/sipsentry/dropwatch/packet"
)

func udp4(src string, sport uint16, payload string, totalLen int) []byte {
	b := make([]byte, 28+len(payload))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(totalLen))
	b[8], b[9] = 64, packet.ProtoUDP
	a := netip.MustParseAddr(src).As4()
	copy(b[12:], a[:])
	copy(b[16:], []byte{198, 51, 100, 1})
	binary.BigEndian.PutUint16(b[20:], sport)
	binary.BigEndian.PutUint16(b[22:], 5060)
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	copy(b[28:], payload)
	return b
}

func udp6(ext []byte, payload string) []byte {
	b := make([]byte, 40+len(ext)+8+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(ext)+8+len(payload)))
	b[6] = packet.ProtoUDP
	if len(ext) > 0 {
		b[6] = 60 // destination options
		ext[0] = packet.ProtoUDP
	}
	a := netip.MustParseAddr("2001:db8::66").As16()
	copy(b[8:], a[:])
	copy(b[40:], ext)
	u := b[40+len(ext):]
	binary.BigEndian.PutUint16(u[0:], 5077)
	binary.BigEndian.PutUint16(u[2:], 5060)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	return b
}

func TestDecode(t *testing.T) {
	p, err := packet.Decode(udp4("203.0.113.66", 5070, "REGISTER", 36))
	if err != nil || p.Src != netip.MustParseAddr("203.0.113.66") || p.Proto != packet.ProtoUDP ||
		p.SrcPort != 5070 || p.DstPort != 5060 || string(p.Payload) != "REGISTER" || p.Truncated {
		t.Fatalf("got %+v, %v", p, err)
	}
	// NFLOG cut the packet: the IP length claims more than was copied.
	p, err = packet.Decode(udp4("203.0.113.66", 5070, "REGISTER", 1400))
	if err != nil || string(p.Payload) != "REGISTER" || !p.Truncated {
		t.Fatalf("cut: got %+v, %v", p, err)
	}
	p, err = packet.Decode(udp6(make([]byte, 8), "OPTIONS"))
	if err != nil || p.Src != netip.MustParseAddr("2001:db8::66") || p.SrcPort != 5077 || string(p.Payload) != "OPTIONS" {
		t.Fatalf("v6 with an extension header: got %+v, %v", p, err)
	}
	for name, b := range map[string][]byte{
		"empty": {}, "v5": {0x50, 0, 0}, "short v4": make([]byte, 19), "short v6": {0x60, 0},
		"ihl past the end": append([]byte{0x4f}, make([]byte, 20)...),
		"total below ihl":  udp4("203.0.113.66", 1, "", 10),
	} {
		if _, err := packet.Decode(b); err == nil {
			t.Errorf("%s: no error", name)
		} else if !errors.Is(err, packet.ErrShort) && !errors.Is(err, packet.ErrVersion) && !errors.Is(err, packet.ErrHeader) {
			t.Errorf("%s: %v is not a sentinel", name, err)
		}
	}
	// Every cut of a valid packet decodes without panic, never past the end.
	full := udp6(make([]byte, 16), "REGISTER sip:h SIP/2.0")
	for n := range len(full) {
		p, _ := packet.Decode(full[:n])
		if len(p.Payload) > n {
			t.Fatalf("cut %d: payload of %d bytes", n, len(p.Payload))
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(udp4("203.0.113.66", 5070, "REGISTER", 36))
	f.Add(udp6(make([]byte, 8), "OPTIONS"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _ := packet.Decode(b)
		if len(p.Payload) > len(b) {
			t.Fatalf("payload of %d bytes from %d", len(p.Payload), len(b))
		}
	})
}
