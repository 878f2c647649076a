package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseErrorsNameFileLineKey(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"unknown key", "[ami]\naddress = \"127.0.0.1:5038\"\nbogus = 1\n", "x.toml:3: ami.bogus: unknown key"},
		{"bad duration", "[engine]\n\nban_time = \"forever\"\n", "x.toml:3: engine.ban_time:"},
		{"bad cidr", "[firewall]\nallow = [\"10.0.0.300/8\"]\n", "x.toml:2: firewall.allow:"},
		{"bad mode", "[firewall]\nmode = \"block\"\n", "x.toml:2: firewall.mode: \"block\" is not one of enforce, monitor"},
		{"bad country", "[geo]\nallow_countries = [\"XX\"]\n", "x.toml:2: geo.allow_countries:"},
		{"no cc", "[geo]\nlist_url_v4 = \"https://example.invalid/list.txt\"\n", "x.toml:2: geo.list_url_v4: template"},
		{"bad port", "[firewall]\nudp_ports = [\"70000\"]\n", "x.toml:2: firewall.udp_ports:"},
		{"lockout", "[firewall]\nmode = \"enforce\"\n[engine]\ngeo_mode = \"drop\"\n", "would lock every phone out"},
		{"bad regexp", "[push]\nuser_agents = [\"(\"]\n", "x.toml:2: push.user_agents:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(c.body))
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestParseOverridesDefaults(t *testing.T) {
	c, err := Parse("x.toml", []byte(`
state_dir = "/tmp/s"
[geo]
allow_countries = ["jp", "US"]
[firewall]
mode = "enforce"
allow = ["203.0.113.7", "2001:db8::1/32"]
udp_ports = ["5060", "5080-5090"]
[engine]
ban_time = "2d"
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Geo.AllowCountries; len(got) != 2 || got[0] != "JP" || got[1] != "US" {
		t.Errorf("allow_countries = %v", got)
	}
	if got := c.Firewall.Allow[0].String(); got != "203.0.113.7/32" {
		t.Errorf("allow[0] = %s", got)
	}
	if got := c.Firewall.Allow[1].String(); got != "2001:db8::/32" {
		t.Errorf("allow[1] = %s (host bits must be masked)", got)
	}
	if got := c.Firewall.UDPPorts[1]; got.From != 5080 || got.To != 5090 {
		t.Errorf("udp_ports[1] = %v", got)
	}
	if got := c.Engine.BanTime.D().Hours(); got != 48 {
		t.Errorf("ban_time = %vh", got)
	}
	if c.Engine.MaxFailures != 5 {
		t.Errorf("default max_failures lost: %d", c.Engine.MaxFailures)
	}
}

func TestLoadRefusesReadableSecrets(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.toml")
	if err := os.WriteFile(p, []byte("[ami]\nsecret = \"x\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) {
		t.Fatalf("Load of a 0644 file with a secret: %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := c.AMISecret(); s != "x" {
		t.Fatalf("secret = %q", s)
	}
}

func TestSecretFileMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	sf := filepath.Join(dir, "ami.secret")
	os.WriteFile(sf, []byte("s3cret\n"), 0o640)
	c := Default()
	c.AMI.SecretFile = sf
	if _, err := c.AMISecret(); err == nil || !strings.Contains(err.Error(), "chmod 600 "+sf) {
		t.Fatalf("want refusal naming the chmod, got %v", err)
	}
	os.Chmod(sf, 0o600)
	if s, err := c.AMISecret(); err != nil || s != "s3cret" {
		t.Fatalf("secret = %q, %v", s, err)
	}
}

func TestFirewallGeoDropFollowsGeoMode(t *testing.T) {
	for mode, want := range map[string]bool{"drop": true, "strict": false, "off": false, "monitor": false} {
		c, err := Parse("x.toml", []byte("[firewall]\nallow = [\"198.51.100.0/24\"]\n[engine]\ngeo_mode = \""+mode+"\"\n"))
		if err != nil {
			t.Fatal(err)
		}
		if c.Firewall.GeoDrop != want {
			t.Errorf("geo_mode %s: Firewall.GeoDrop = %v, want %v", mode, c.Firewall.GeoDrop, want)
		}
	}
}

// engine.geo_mode = "monitor" is the deprecated name of "off": accepted,
// turned into "off", and warned about with the file and line.
func TestGeoModeMonitorIsDeprecatedOff(t *testing.T) {
	c, err := Parse("x.toml", []byte("[engine]\ngeo_mode = \"monitor\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Engine.GeoMode != "off" {
		t.Errorf("geo_mode = %q, want off", c.Engine.GeoMode)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "x.toml:2: engine.geo_mode") || !strings.Contains(c.Warnings[0], "firewall.mode") {
		t.Errorf("warnings %q", c.Warnings)
	}
	if c, err := Parse("x.toml", []byte("[engine]\ngeo_mode = \"off\"\n")); err != nil || len(c.Warnings) != 0 {
		t.Errorf("off: %v %q", err, c.Warnings)
	}
	if Default().Engine.GeoMode != "off" {
		t.Errorf("default geo_mode %q", Default().Engine.GeoMode)
	}
}
