package config

import (
	"strings"
	"testing"
	"time"
)

// The drop-mode keys of issue 12: firewall.nflog_group, push.probation,
// push.max_probations.
func TestDropwatchKeys(t *testing.T) {
	c, err := Parse("x.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Firewall.NFLogGroup != 5060 || c.Push.Probation.D() != time.Minute || c.Push.MaxProbations != 10 {
		t.Errorf("defaults: nflog_group %d, probation %v, max_probations %d; want 5060, 1m, 10",
			c.Firewall.NFLogGroup, c.Push.Probation.D(), c.Push.MaxProbations)
	}
	c, err = Parse("x.toml", []byte("[firewall]\nnflog_group = 0\n[push]\nprobation = \"0s\"\nmax_probations = 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Firewall.NFLogGroup != 0 || c.Push.Probation != 0 || c.Push.MaxProbations != 3 {
		t.Errorf("overrides: %d %v %d", c.Firewall.NFLogGroup, c.Push.Probation.D(), c.Push.MaxProbations)
	}
	for body, want := range map[string]string{
		"[firewall]\nnflog_group = 70000\n": "x.toml:2: firewall.nflog_group",
		"[push]\nmax_probations = -1\n":     "x.toml:2: push.max_probations: must be 0 or more",
		"[push]\nprobation = \"2h\"\n":      "x.toml:2: push.probation: must be at most 1h",
	} {
		_, err := Parse("x.toml", []byte(body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}
