package sip_test

import (
	"testing"

	"github.com/sipsentry/sipsentry/dropwatch/internal/pcap"
	"github.com/sipsentry/sipsentry/dropwatch/packet"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// recorded are the pcaps of shared/testdata/asterisk whose requests the
// tests, the fuzz seeds and the benchmark use.
var recorded = []string{"sip-scenarios.pcap", "sip-s9-injection.pcap", "sip-netns.pcap", "forged/sip-forged.pcap"}

// frames returns the decoded packets of a recorded pcap, by frame index.
func frames(t testing.TB, name string) []packet.Packet {
	t.Helper()
	raw, err := pcap.IPPackets(testpath.Shared(t, "asterisk", name))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]packet.Packet, len(raw))
	for i, b := range raw {
		p, err := packet.Decode(b)
		if err != nil {
			t.Fatalf("%s frame %d: %v", name, i, err)
		}
		out[i] = p
	}
	return out
}

// payloads returns every non-empty transport payload of the recorded pcaps.
func payloads(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, f := range recorded {
		for _, p := range frames(t, f) {
			if len(p.Payload) > 0 {
				out = append(out, p.Payload)
			}
		}
	}
	return out
}
