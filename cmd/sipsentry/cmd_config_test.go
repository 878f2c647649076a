package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/sipsentry/sipsentry/internal/config"
)

// configKeys lists every key of config.Config as "table.key" (or "key" at
// the top), read from the toml tags so a new key cannot be forgotten.
func configKeys(t *testing.T) []string {
	t.Helper()
	var keys []string
	ct := reflect.TypeOf(config.Config{})
	for i := 0; i < ct.NumField(); i++ {
		f := ct.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() != reflect.Struct {
			keys = append(keys, tag)
			continue
		}
		for j := 0; j < f.Type.NumField(); j++ {
			sub := strings.Split(f.Type.Field(j).Tag.Get("toml"), ",")[0]
			if sub == "" || sub == "-" {
				continue
			}
			keys = append(keys, tag+"."+sub)
		}
	}
	if len(keys) < 50 {
		t.Fatalf("only %d config keys found by reflection: the walk is broken", len(keys))
	}
	return keys
}

func exampleConfig(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(adminRepoRoot(t), "contrib", "sipsentry.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// marshalConfig renders a config for comparison (regexps and durations as text).
func marshalConfig(t *testing.T, c *config.Config) string {
	t.Helper()
	b, err := toml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExampleConfigParsesWithDefaults(t *testing.T) {
	c, err := config.Parse("contrib/sipsentry.toml", exampleConfig(t))
	if err != nil {
		t.Fatalf("the shipped example config does not parse: %v", err)
	}
	// The example documents the defaults: apart from the two values an admin
	// must set (the secret file and the countries), it must equal Default().
	if c.AMI.SecretFile != "/etc/sipsentry/ami.secret" || !reflect.DeepEqual(c.Geo.AllowCountries, []string{"JP"}) {
		t.Errorf("example: secret_file %q, allow_countries %v", c.AMI.SecretFile, c.Geo.AllowCountries)
	}
	if c.Firewall.Mode != "monitor" || c.Engine.GeoMode != "off" {
		t.Errorf("the example must start in monitor mode, has firewall.mode %q, geo_mode %q", c.Firewall.Mode, c.Engine.GeoMode)
	}
	c.AMI.SecretFile, c.Geo.AllowCountries, c.Path = "", nil, ""
	def := config.Default()
	if got, want := marshalConfig(t, c), marshalConfig(t, def); got != want {
		t.Errorf("example config differs from config.Default() beyond secret_file and allow_countries:\n--- example\n%s\n--- default\n%s", got, want)
	}
}

// exampleKeyRE matches "key =" and the commented "# key =" of optional keys.
var exampleKeyRE = regexp.MustCompile(`^#?\s*([a-z0-9_]+)\s*=`)

func TestExampleConfigHasEveryKey(t *testing.T) {
	seen := map[string]bool{}
	table := ""
	for _, line := range strings.Split(string(exampleConfig(t)), "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]") {
			table = strings.Trim(l, "[]")
			continue
		}
		if m := exampleKeyRE.FindStringSubmatch(l); m != nil {
			k := m[1]
			if table != "" {
				k = table + "." + k
			}
			seen[k] = true
		}
	}
	var missing []string
	for _, k := range configKeys(t) {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("contrib/sipsentry.toml does not show (commented or not): %s", strings.Join(missing, ", "))
	}
}

// TestREADMEConfigReference checks that the README's reference table names
// every key, and that each default written in backticks is the real one (it
// is parsed as TOML and compared with config.Default()).
func TestREADMEConfigReference(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(adminRepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	start := strings.Index(text, "## Configuration reference")
	if start < 0 {
		t.Fatal("README.md has no \"## Configuration reference\" section")
	}
	section := text[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	rows := map[string]string{} // key -> default column
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		key := strings.Trim(strings.TrimSpace(cells[1]), "`")
		rows[key] = strings.TrimSpace(cells[2])
	}
	// Defaults written as prose (too long for a cell) instead of TOML.
	prose := map[string]bool{"push.hosts": true}
	def := marshalConfig(t, config.Default())
	for _, k := range configKeys(t) {
		col, ok := rows[k]
		if !ok {
			t.Errorf("README configuration reference has no row for %s", k)
			continue
		}
		if prose[k] {
			continue
		}
		if !strings.HasPrefix(col, "`") || !strings.HasSuffix(col, "`") {
			t.Errorf("%s: default %q is not a TOML value in backticks", k, col)
			continue
		}
		val := strings.Trim(col, "`")
		doc := k + " = " + val + "\n"
		if table, key, ok := strings.Cut(k, "."); ok {
			doc = fmt.Sprintf("[%s]\n%s = %s\n", table, key, val)
		}
		c, err := config.Parse("README", []byte(doc))
		if err != nil {
			t.Errorf("%s: README default %s does not parse: %v", k, val, err)
			continue
		}
		if got := marshalConfig(t, c); got != def {
			t.Errorf("%s: README says default %s, but config.Default() differs", k, val)
		}
	}
	extra := []string{}
	known := map[string]bool{}
	for _, k := range configKeys(t) {
		known[k] = true
	}
	for k := range rows {
		if k != "key" && k != "---" && !known[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("README documents keys that do not exist: %v", extra)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "ami.secret")
	writeFile(t, secret, "s3cret\n", 0o600)
	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, strings.Replace(string(exampleConfig(t)), "/etc/sipsentry/ami.secret", secret, 1), 0o600)

	out, err := execRoot(t, "config", "check", "--config", good)
	if err != nil {
		t.Fatalf("config check of the example: %v", err)
	}
	if !strings.Contains(out, good+": ok (firewall.mode = monitor, engine.geo_mode = off)") {
		t.Errorf("unexpected output %q", out)
	}

	for _, tc := range []struct {
		name, text string
		mode       os.FileMode
		errHas     string
	}{
		{"bad value", "state_dir = \"/x\"\n[engine]\nmax_failures = 0\n", 0o600, "bad.toml:3: engine.max_failures: must be at least 1"},
		{"unknown key", "[firewall]\nmodes = \"enforce\"\n", 0o600, "bad.toml:2: firewall.modes: unknown key"},
		{"secret readable by others", "[ami]\nsecret = \"s3cret\"\n", 0o644, "chmod 600"},
		{"no secret", "[ami]\nusername = \"x\"\n", 0o600, "neither secret nor secret_file"},
		// Issue 10: any local user could edit firewall.allow or the mode.
		{"writable by others", "[ami]\nsecret_file = \"/x\"\n", 0o666, "is mode 0666: group or others can change it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := filepath.Join(t.TempDir(), "bad.toml")
			writeFile(t, bad, tc.text, tc.mode)
			_, err := execRoot(t, "config", "check", "--config", bad)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("err = %v, want a usage error (exit 2)", err)
			}
			if !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("error %q does not contain %q", err, tc.errHas)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("secret in the error: %q", err)
			}
		})
	}
	_, err = execRoot(t, "config", "check", "--config", filepath.Join(dir, "nope.toml"))
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: err = %v, want a usage error saying it does not exist", err)
	}
}

// What run refuses, config check refuses (issue 13): the unit's
// ExecStartPre must stop a restart loop before it starts.
func TestConfigCheckRefusesWhatRunRefuses(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "ami.secret")
	writeFile(t, secret, "s3cret\n", 0o600)
	for _, tc := range []struct{ name, text, errHas string }{
		{"allow everything", "[firewall]\nallow = [\"0.0.0.0/0\"]\n", ":4: firewall.allow: 0.0.0.0/0 covers the whole address space"},
		{"missing secret file", "[ami]\nsecret_file = \"" + filepath.Join(dir, "nope") + "\"\n", ":2: ami.secret_file: " + filepath.Join(dir, "nope") + " does not exist: create it"},
		{"metrics on every address", "[metrics]\nlisten = \"0.0.0.0:9468\"\n", "metrics.listen: \"0.0.0.0:9468\" is not a loopback address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "sipsentry.toml")
			text := tc.text
			if !strings.Contains(text, "secret_file") {
				text = "[ami]\nsecret_file = \"" + secret + "\"\n" + text // two lines before the case's own
			}
			writeFile(t, cfg, text, 0o600)
			_, err := execRoot(t, "config", "check", "--config", cfg)
			if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("config check: %v (exit %d), want exit 2 with %q", err, exitCode(err), tc.errHas)
			}
			// run reads the config through the same function: same refusal.
			_, runErr := execRoot(t, "run", "--config", cfg)
			if runErr == nil || runErr.Error() != err.Error() || exitCode(runErr) != exitUsage {
				t.Errorf("run: %v, want the same refusal as config check (%v)", runErr, err)
			}
		})
	}
}
