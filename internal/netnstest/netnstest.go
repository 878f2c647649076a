// Package netnstest gives tests real network namespaces: create and delete
// them, join them with veth pairs carrying TEST-NET addresses, run commands
// and Go code inside them. It is for tests only and must never touch the
// host's own namespace beyond creating and deleting the names it made.
//
// Tests that need root or a tool call RequireRoot / RequireTool: off CI
// they skip with the reason, under CI=true they fail, because CI must
// run every kernel test.
package netnstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// InCI reports whether the tests run under CI (CI=true), where skipping a
// kernel test is a failure.
func InCI() bool { return os.Getenv("CI") == "true" }

// Unavailable skips t with reason, or fails it under CI. It is the one place
// that makes this decision.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("CI=true and %s: kernel tests must run in CI", reason)
	}
	t.Skipf("skipping: %s (run as root with the tool installed; CI=true makes this fatal)", reason)
}

// RequireRoot skips (fails under CI) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "not running as root (network namespaces, ipset and iptables need CAP_NET_ADMIN)")
	}
}

// RequireTool skips (fails under CI) unless every named program is on PATH.
func RequireTool(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Unavailable(t, fmt.Sprintf("%s is not installed", n))
		}
	}
}

// NS is a named network namespace that lives until the test ends.
type NS struct {
	Name string
	t    testing.TB
}

// UniqueName returns prefix plus a random suffix, short enough for an
// interface name (15 bytes) when prefix is at most 6 bytes.
func UniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// NewNS creates a namespace named "sst-<label>-<random>" with lo up and
// deletes it when the test ends. It requires root and iproute2.
func NewNS(t testing.TB, label string) *NS {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	name := UniqueName("sst-" + label + "-")
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("netnstest: ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
			t.Errorf("netnstest: ip netns delete %s: %v: %s", name, err, out)
		}
	})
	ns.MustExec("ip", "link", "set", "lo", "up")
	return ns
}

// Exec runs a program inside the namespace (ip netns exec NAME prog args...)
// and returns its combined output.
func (ns *NS) Exec(prog string, args ...string) (string, error) {
	return ns.ExecInput(nil, prog, args...)
}

// ExecInput is Exec with stdin.
func (ns *NS) ExecInput(stdin []byte, prog string, args ...string) (string, error) {
	argv := append([]string{"netns", "exec", ns.Name, prog}, args...)
	cmd := exec.Command("ip", argv...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netnstest: in %s: %s %s: %w: %s", ns.Name, prog, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustExec is Exec that fails the test on error.
func (ns *NS) MustExec(prog string, args ...string) string {
	ns.t.Helper()
	out, err := ns.Exec(prog, args...)
	if err != nil {
		ns.t.Fatal(err)
	}
	return out
}

// Do runs f on an OS thread that has joined the namespace. Sockets f opens
// stay in the namespace after Do returns and may be used from any goroutine.
// Programs started inside f run in the namespace too.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netnstest: current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns.Name)
		if err != nil {
			errc <- fmt.Errorf("netnstest: open netns %s: %w", ns.Name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			errc <- fmt.Errorf("netnstest: enter netns %s: %w", ns.Name, err)
			return
		}
		ferr := f()
		// Only a thread that is back in its own namespace may serve other
		// goroutines; otherwise it stays locked and dies with this goroutine.
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// Addr is an interface address in CIDR form, e.g. "198.51.100.1/24" or
// "2001:db8:1::1/64".
type Addr = string

// Veth joins a and b with a veth pair and gives each end the listed
// addresses (IPv6 ones with nodad, so they are usable at once). It returns
// the interface names (a's end, b's end).
func Veth(t testing.TB, a, b *NS, addrsA, addrsB []Addr) (string, string) {
	t.Helper()
	ifA, ifB := UniqueName("va"), UniqueName("vb")
	if out, err := exec.Command("ip", "link", "add", ifA, "netns", a.Name, "type", "veth",
		"peer", "name", ifB, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("netnstest: veth %s<->%s: %v: %s", a.Name, b.Name, err, out)
	}
	for _, side := range []struct {
		ns    *NS
		ifc   string
		addrs []Addr
	}{{a, ifA, addrsA}, {b, ifB, addrsB}} {
		for _, ad := range side.addrs {
			args := []string{"addr", "add", ad, "dev", side.ifc}
			if strings.Contains(ad, ":") { // an iproute2 argument we wrote, not data
				args = append(args, "nodad")
			}
			side.ns.MustExec("ip", args...)
		}
		side.ns.MustExec("ip", "link", "set", side.ifc, "up")
	}
	return ifA, ifB
}
