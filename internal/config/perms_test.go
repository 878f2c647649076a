package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sipsentry.toml")
	if err := os.WriteFile(p, []byte("state_dir = \"/var/lib/sipsentry\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// Issue 10: a config file mode 0666 let any local user add themselves to
// firewall.allow or switch to monitor mode. Load (run, config check) refuses
// it with the chmod to run.
func TestLoadRefusesAConfigOthersCanWrite(t *testing.T) {
	for _, mode := range []os.FileMode{0o666, 0o620, 0o602} {
		p := writeConfig(t, mode)
		_, err := Load(p)
		if !errors.Is(err, ErrUnsafeOwner) || !strings.Contains(err.Error(), "run: chmod go-w "+p) {
			t.Errorf("mode %04o: Load = %v, want ErrUnsafeOwner with the chmod", mode, err)
		}
	}
	for _, mode := range []os.FileMode{0o600, 0o644, 0o640} {
		if _, err := Load(writeConfig(t, mode)); err != nil {
			t.Errorf("mode %04o: Load = %v, want it accepted (readable is not writable)", mode, err)
		}
	}
}

// A file owned by a user other than root or the service user is refused
// with the chown to run.
func TestCheckOwnerRefusesAForeignOwner(t *testing.T) {
	p := writeConfig(t, 0o600)
	me := uint32(os.Geteuid())
	var err error
	if me == 0 {
		// As root: hand the file to nobody, as a local user's own file would be.
		if err := os.Chown(p, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		_, err = Load(p)
	} else {
		// Not root: the file is ours; judge it as a service user with another uid.
		err = checkOwner(p, me+1)
	}
	if !errors.Is(err, ErrUnsafeOwner) || !strings.Contains(err.Error(), "run: chown root "+p) {
		t.Fatalf("foreign owner: %v, want ErrUnsafeOwner with the chown", err)
	}
}

// The directory holding the file counts too: a writable one lets anyone
// replace the file; a sticky one (/tmp) does not.
func TestCheckOwnerJudgesTheDirectory(t *testing.T) {
	p := writeConfig(t, 0o600)
	dir := filepath.Dir(p)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := CheckOwner(p); !errors.Is(err, ErrUnsafeOwner) || !strings.Contains(err.Error(), "directory "+dir) {
		t.Errorf("0777 directory: %v, want ErrUnsafeOwner naming it", err)
	}
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := CheckOwner(p); err != nil {
		t.Errorf("sticky directory: %v, want it accepted", err)
	}
}

// A secret file is judged alike (before it is read).
func TestReadSecretFileRefusesOthersWritable(t *testing.T) {
	p := filepath.Join(t.TempDir(), "ami.secret")
	if err := os.WriteFile(p, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o622); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecretFile(p); err == nil {
		t.Fatal("a secret file others can write was read")
	}
}

// run and config check read the file through LoadForRun: the same refusal.
func TestLoadForRunRefusesAConfigOthersCanWrite(t *testing.T) {
	p := writeConfig(t, 0o666)
	if _, err := LoadForRun(p, true); !errors.Is(err, ErrUnsafeOwner) || !strings.Contains(err.Error(), "chmod go-w "+p) {
		t.Errorf("LoadForRun(0666) = %v, want ErrUnsafeOwner with the chmod", err)
	}
}

// Issue 10: metrics.listen = "localhost:…" skipped the loopback check.
// config check (Parse) refuses it with the line to write, as run does.
func TestParseRefusesAListenName(t *testing.T) {
	for v, want := range map[string]string{
		"localhost:9468":     `write a literal loopback address instead, e.g. "127.0.0.1:9468"`,
		"0.0.0.0:9468":       "is not a loopback address",
		"unix:relative.sock": "absolute path",
	} {
		_, err := Parse("x.toml", []byte("[metrics]\nlisten = \""+v+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), "metrics.listen") || !strings.Contains(err.Error(), want) {
			t.Errorf("listen %q: %v, want an error containing %q", v, err, want)
		}
	}
	for _, v := range []string{"", "127.0.0.1:9468", "[::1]:9468", "unix:/run/sipsentry/metrics.sock"} {
		if _, err := Parse("x.toml", []byte("[metrics]\nlisten = \""+v+"\"\n")); err != nil {
			t.Errorf("listen %q refused: %v", v, err)
		}
	}
}
