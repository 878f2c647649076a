package daemon

import (
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/control"
)

func TestControlAccess(t *testing.T) {
	for _, tc := range []struct {
		group string
		want  control.Access
	}{
		{"", control.Access{}},
		{"64123", control.Access{GroupSet: true, Group: 64123}},
		{"0", control.Access{GroupSet: true, Group: 0}},
		{"root", control.Access{GroupSet: true, Group: 0}}, // every Linux host has it
	} {
		got, err := controlAccess(tc.group)
		if err != nil || got != tc.want {
			t.Errorf("controlAccess(%q) = %+v, %v; want %+v", tc.group, got, err, tc.want)
		}
	}
	if _, err := controlAccess("no-such-group-sipsentry"); err == nil {
		t.Error("an unknown group name was accepted")
	}
	// A group that does not exist is a configuration error (exit 2) at start.
	cfg := config.Default()
	cfg.Control = controlConfig(t, "no-such-group-sipsentry")
	_, err := newControlService(&daemon{cfg: cfg}, false)
	if !errors.Is(err, ErrConfig) {
		t.Errorf("openControl with an unknown group: %v, want ErrConfig", err)
	}
}

func controlConfig(t *testing.T, group string) config.Control {
	return config.Control{Socket: t.TempDir() + "/control.sock", Group: group}
}

// A second daemon on the same control.socket stops at it (before anything
// else is touched), and a replay opens no socket at all.
func TestControlServiceSecondDaemon(t *testing.T) {
	cfg := config.Default()
	cfg.Control = controlConfig(t, "")
	first, err := newControlService(&daemon{cfg: cfg}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := newControlService(&daemon{cfg: cfg}, false); !errors.Is(err, control.ErrInUse) || errors.Is(err, ErrConfig) {
		t.Errorf("second daemon: %v, want control.ErrInUse (exit 1)", err)
	}
	first.Close()
	replay, err := newControlService(&daemon{cfg: cfg}, true)
	if err != nil || replay.srv != nil {
		t.Errorf("replay: %+v, %v; want no socket", replay, err)
	}
	if _, err := os.Lstat(cfg.Control.Socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket file after Close and a replay: %v", err)
	}
}
