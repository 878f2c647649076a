package daemon

import (
	"errors"
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
