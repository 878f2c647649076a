package config

// Who may change sipsentry's settings. The config file decides what is
// allowed through the firewall and whether anything is enforced, so a file
// (or the directory holding it) that a local user other than root or the
// service user can write is a way to switch protection off: refused, with
// the command that fixes it.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrUnsafeOwner marks a config or secret file that someone other than root
// or the service user could change (mode or owner).
var ErrUnsafeOwner = errors.New("config: file writable by another user")

// CheckOwner refuses path when group or others may write it, or when it is
// owned by a user other than root or the user this process runs as (the
// service user); the same for the directory holding it (a writable
// directory lets anyone replace the file), unless that directory is sticky
// and owned by root or the service user. The error names the chmod or chown
// that fixes it.
func CheckOwner(path string) error {
	return checkOwner(path, uint32(os.Geteuid()))
}

func checkOwner(path string, serviceUID uint32) error {
	if err := checkOneOwner(path, serviceUID, false); err != nil {
		return err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return checkOneOwner(filepath.Dir(abs), serviceUID, true)
}

func checkOneOwner(path string, serviceUID uint32, dir bool) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	what := "file"
	if dir {
		what = "directory"
	}
	uid, ok := ownerOf(st)
	if ok && uid != 0 && uid != serviceUID {
		return fmt.Errorf("%w: %s %s is owned by uid %d, neither root nor the service user (uid %d): that user can change what sipsentry enforces; run: chown root %s",
			ErrUnsafeOwner, what, path, uid, serviceUID, path)
	}
	perm := st.Mode().Perm()
	if perm&0o022 == 0 {
		return nil
	}
	if dir && st.Mode()&fs.ModeSticky != 0 {
		return nil // others may create files here but not replace ours
	}
	return fmt.Errorf("%w: %s %s is mode %04o: group or others can change it (and with it what sipsentry allows or enforces); run: chmod go-w %s",
		ErrUnsafeOwner, what, path, perm, path)
}

func ownerOf(st fs.FileInfo) (uint32, bool) {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Uid, true
	}
	return 0, false
}
