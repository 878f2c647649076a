// Package benchns gives the benchmark commands under bench/ a network
// namespace of their own, deleted at the end: the kernel backend, the
// daemon and its fake Asterisk run there, never in the host's namespace.
// (Tests use internal/netnstest, which ties the namespace to a testing.T.)
package benchns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netns"
)

// NS is a namespace "<prefix><random>" with its loopback up.
type NS struct{ Name string }

// New creates the namespace; Delete removes it.
func New(prefix string) (*NS, error) {
	var b [4]byte
	rand.Read(b[:])
	name := prefix + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %v: %s", err, out)
	}
	ns := &NS{name}
	if _, err := ns.Exec("ip", "link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Delete removes the namespace.
func (ns *NS) Delete() { exec.Command("ip", "netns", "delete", ns.Name).Run() }

// Exec runs prog with args inside the namespace (an argument list, never a
// shell) and returns its combined output.
func (ns *NS) Exec(prog string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name, prog}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %v: %s", prog, args, err, out)
	}
	return string(out), nil
}

// Do runs f on a thread inside the namespace; sockets and processes f
// creates stay there.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns.Name)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		ferr := f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread() // a thread left in the namespace dies with the goroutine
		}
		errc <- ferr
	}()
	return <-errc
}
