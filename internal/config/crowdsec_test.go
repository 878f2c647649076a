package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// config check reads the [crowdsec] credential files as run does: an empty
// key file, a malformed machine file and a file another user owns are each
// refused with the key named, so systemd's ExecStartPre catches them.
func TestLoadForRunChecksCrowdsecFiles(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "ami.secret")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("ami.secret", "s3cret\n")
	good := write("m.yaml", "url: http://127.0.0.1:8080\nlogin: pbx\npassword: pw-0123456789\n")
	goodKey := write("b.key", "0123456789abcdef\n")
	cases := []struct {
		name, machine, key, want string
	}{
		{"good", good, goodKey, ""},
		{"empty key", good, write("empty.key", "\n"), "crowdsec.bouncer_key_file"},
		{"bad machine", write("bad.yaml", "url: x\n"), goodKey, "crowdsec.machine_credentials_file"},
	}
	if os.Geteuid() == 0 {
		foreign := write("foreign.key", "0123456789abcdef\n")
		if err := os.Chown(foreign, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct{ name, machine, key, want string }{"foreign owner", good, foreign, "crowdsec.bouncer_key_file"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := write("c.toml", fmt.Sprintf("state_dir = %q\n[ami]\nsecret_file = %q\n[crowdsec]\nenabled = true\nmachine_credentials_file = %q\nbouncer_key_file = %q\n",
				filepath.Join(dir, "state"), secret, tc.machine, tc.key))
			_, err := LoadForRun(cfg, false)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}
