package e2e

import (
	"strings"
	"testing"
)

// Issue 10: `iptables -F SIPSENTRY` left the daemon believing all was well
// (/healthz ok). Now the verifier (firewall.verify_interval, 10 s here)
// re-creates the chain's rules, counts the repair, and /healthz answers 503
// with the reason until a pass finds the rules intact; then ok again.
func TestFlushedChainIsRepairedAndReported(t *testing.T) {
	s := newCtlSetup(t, "flushchain", "")
	s.start(t)
	eventually(t, "/healthz ok after the start", func() (bool, string) {
		code, body := nsGet(t, s.ns, "http://127.0.0.1:9468/healthz")
		return code == 200, body
	})
	if out, err := s.ns.Exec("iptables", "-F", "SIPSENTRY"); err != nil {
		t.Fatalf("iptables -F SIPSENTRY: %v %s", err, out)
	}
	eventually(t, "/healthz 503 naming the re-created rules", func() (bool, string) {
		code, body := nsGet(t, s.ns, "http://127.0.0.1:9468/healthz")
		return code == 503 && strings.Contains(body, "re-created"), body
	})
	rules, err := s.ns.Exec("iptables", "-S", "SIPSENTRY")
	if err != nil || strings.Count(rules, "-A SIPSENTRY") < 2 {
		t.Errorf("the chain's rules were not re-created: %v\n%s", err, rules)
	}
	if _, m := nsGet(t, s.ns, "http://127.0.0.1:9468/metrics"); !strings.Contains(m, `sipsentry_firewall_repairs_total{object="chain-v4"} 1`) ||
		!strings.Contains(m, `sipsentry_health_degraded{condition="firewall"} 1`) {
		t.Errorf("/metrics lacks the repair count or the firewall condition")
	}
	eventually(t, "/healthz ok after a clean pass", func() (bool, string) {
		code, body := nsGet(t, s.ns, "http://127.0.0.1:9468/healthz")
		return code == 200, body
	})
}
