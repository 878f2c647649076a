package dropwatch

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/sipsentry/sipsentry/dropwatch/nflog"
	"github.com/sipsentry/sipsentry/dropwatch/packet"
)

// udpDrop builds the NFLOG copy of a UDP packet from src to 198.51.100.1:5060.
func udpDrop(t testing.TB, reason string, src netip.AddrPort, payload string) nflog.Drop {
	t.Helper()
	var b []byte
	if src.Addr().Is4() {
		b = make([]byte, 28+len(payload))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		b[9] = packet.ProtoUDP
		a := src.Addr().As4()
		copy(b[12:], a[:])
		copy(b[16:], []byte{198, 51, 100, 1})
		u := b[20:]
		binary.BigEndian.PutUint16(u[0:], src.Port())
		binary.BigEndian.PutUint16(u[2:], 5060)
		binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
		copy(u[8:], payload)
	} else {
		b = make([]byte, 48+len(payload))
		b[0] = 0x60
		binary.BigEndian.PutUint16(b[4:], uint16(8+len(payload)))
		b[6] = packet.ProtoUDP
		a := src.Addr().As16()
		copy(b[8:], a[:])
		u := b[40:]
		binary.BigEndian.PutUint16(u[0:], src.Port())
		binary.BigEndian.PutUint16(u[2:], 5060)
		binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
		copy(u[8:], payload)
	}
	p, err := packet.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return nflog.Drop{Reason: reason, Packet: p}
}

// register is a REGISTER as a push server sends it (UA and RFC 8599
// parameters are arguments).
func register(ua, contactParams string) string {
	return "REGISTER sip:198.51.100.1 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK-1\r\n" +
		"From: <sip:1001@198.51.100.1>;tag=1\r\n" +
		"To: <sip:1001@198.51.100.1>\r\n" +
		"Call-ID: 1@203.0.113.66\r\nCSeq: 1 REGISTER\r\n" +
		"Contact: <sip:1001@203.0.113.66:5060" + contactParams + ">\r\n" +
		"User-Agent: " + ua + "\r\nExpires: 120\r\nContent-Length: 0\r\n\r\n"
}

const pushParams = ";pn-provider=apns;pn-prid=abc;pn-param=xyz"
