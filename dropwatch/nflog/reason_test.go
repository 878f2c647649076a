package nflog

import "testing"

// The rules' prefixes (firewall/iptables NFLOGPrefixBan, NFLOGPrefixGeo)
// map to the metric's reason label; anything else is "other", so a foreign
// rule logging to the same group cannot mint label values.
func TestReasonOf(t *testing.T) {
	for prefix, want := range map[string]string{
		"sipsentry-ban": ReasonBan, "sipsentry-geo": ReasonGeo, "sipsentry-geo\x00": ReasonGeo,
		"sipsentry-ban ": ReasonBan, "": ReasonOther, "ulogd": ReasonOther, "sipsentry-x": ReasonOther,
		"geo": ReasonOther,
	} {
		if got := reasonOf(prefix); got != want {
			t.Errorf("reasonOf(%q) = %q, want %q", prefix, got, want)
		}
	}
}
