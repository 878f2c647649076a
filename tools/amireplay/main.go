// Command amireplay is a development tool, not shipped: a fake Asterisk
// manager (AMI) that logs a client in and replays a recorded raw capture to
// it, so sipsentry (ami tail, run) can be demonstrated and tested without a
// PBX.
//
//	amireplay [-listen 127.0.0.1:5038] [-user sentry] [-secret sentry-secret]
//	          [-rate 50] [-loop] [-map 127.0.0.11=203.0.113.11 ...]
//	          [-contacts ami-actions.raw] capture.raw [more.raw ...]
//
// Captures are pure server->client streams such as
// shared/testdata/asterisk/ami-security-session.raw; their banner, login
// response and leading FullyBooted are skipped (the fake sends its own), the
// rest is sent byte for byte to every client after it logs in (plain or MD5).
// -map rewrites source addresses before sending, in the AMI address fields
// (IPV4/UDP/127.0.0.11/5070 -> IPV4/UDP/203.0.113.11/5070, the family follows
// the new address) and in contacts' ViaAddr and Uri host; everything else,
// including injected bytes, is replayed unchanged. -contacts answers
// PJSIPShowContacts with the recorded "S->C PJSIPShowContacts" block of a
// transcript (ActionID rewritten). -rate paces messages per second (0: as
// fast as the socket takes them); -loop replays forever.
//
// The -secret is the fake's own test credential, not a real one. amireplay
// must never be pointed at, or stand in for, a production PBX.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "amireplay:", err)
		os.Exit(1)
	}
}

// addrMap is the repeatable -map old=new flag.
type addrMap map[netip.Addr]netip.Addr

func (m addrMap) String() string { return fmt.Sprint(map[netip.Addr]netip.Addr(m)) }

func (m addrMap) Set(s string) error {
	a, b, ok := strings.Cut(s, "=")
	from, err1 := netip.ParseAddr(a)
	to, err2 := netip.ParseAddr(b)
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("want OLD=NEW addresses, e.g. 127.0.0.11=203.0.113.11, got %q", s)
	}
	m[from] = to
	return nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("amireplay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:5038", "address to listen on")
	user := fs.String("user", "sentry", "AMI username the fake accepts")
	secret := fs.String("secret", "sentry-secret", "AMI secret the fake accepts (a test credential)")
	rate := fs.Float64("rate", 0, "messages per second (0: as fast as possible)")
	loop := fs.Bool("loop", false, "replay the capture forever")
	contacts := fs.String("contacts", "", "transcript `FILE` whose S->C PJSIPShowContacts block answers that action")
	m := addrMap{}
	fs.Var(m, "map", "rewrite source address `OLD=NEW` (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("no capture file given: amireplay [flags] capture.raw ...")
	}
	var capture []byte
	for _, f := range fs.Args() {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		capture = append(capture, skipPreamble(b)...)
	}
	capture = rewrite(capture, m)
	msgs := splitMessages(capture)

	var contactsBlock []byte
	if *contacts != "" {
		b, err := os.ReadFile(*contacts)
		if err != nil {
			return err
		}
		if contactsBlock, err = amitest.Transcript(b, "S->C", "PJSIPShowContacts"); err != nil {
			return err
		}
		contactsBlock = rewrite(contactsBlock, m)
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(time.Second) / *rate)
	}
	srv, err := amitest.Start(amitest.Options{
		Listen: *listen, Username: *user, Secret: *secret,
		Handler: func(c *amitest.Conn, req ami.Message) bool {
			if contactsBlock == nil || !strings.EqualFold(req.Get("Action"), "PJSIPShowContacts") {
				return false
			}
			c.Write(withActionID(contactsBlock, req.Get("ActionID")))
			return true
		},
		OnLogin: func(c *amitest.Conn) {
			log.Info("client logged in; replaying", "messages", len(msgs))
			replay(ctx, c, msgs, interval, *loop)
			log.Info("replay finished")
		},
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	fmt.Fprintf(stdout, "amireplay: listening on %s\n", srv.Addr())
	<-ctx.Done()
	return nil
}

func replay(ctx context.Context, c *amitest.Conn, msgs [][]byte, interval time.Duration, loop bool) {
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		for _, msg := range msgs {
			if tick != nil {
				select {
				case <-ctx.Done():
					return
				case <-tick:
				}
			}
			if ctx.Err() != nil || c.Closed() {
				return
			}
			c.Write(msg)
		}
		if !loop {
			return
		}
	}
}

// skipPreamble drops the banner, the login response and a FullyBooted at
// the start of a capture: the fake server sends its own.
func skipPreamble(b []byte) []byte {
	if bytes.HasPrefix(b, []byte("Asterisk Call Manager/")) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	for _, prefix := range []string{"Response: ", "Event: FullyBooted\r\n"} {
		if bytes.HasPrefix(b, []byte(prefix)) {
			if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
				b = b[i+4:]
			}
		}
	}
	return b
}

// splitMessages cuts the stream after each blank line, the unit -rate paces.
// The bytes are unchanged: concatenated, the pieces are the stream.
func splitMessages(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\r\n\r\n"))
		if i < 0 {
			out = append(out, b)
			break
		}
		out = append(out, b[:i+4])
		b = b[i+4:]
	}
	return out
}

var (
	addrField = regexp.MustCompile(`IPV[46]/([A-Z]+)/([0-9A-Fa-f:.]+)/`)
	viaAddr   = regexp.MustCompile(`(?m)^ViaAddr: ([0-9A-Fa-f:.]+)\r$`)
	uriHost   = regexp.MustCompile(`(?m)^(Uri: sips?:[^@\r\n]*@)([0-9.]+|\[[0-9A-Fa-f:.]+\])([:;>\r])`)
)

// rewrite applies the address map to address fields, ViaAddr and Uri hosts.
func rewrite(b []byte, m addrMap) []byte {
	if len(m) == 0 {
		return b
	}
	lookup := func(s string) (netip.Addr, bool) {
		a, err := netip.ParseAddr(strings.Trim(s, "[]"))
		if err != nil {
			return netip.Addr{}, false
		}
		to, ok := m[a]
		return to, ok
	}
	b = addrField.ReplaceAllFunc(b, func(f []byte) []byte {
		sm := addrField.FindSubmatch(f)
		to, ok := lookup(string(sm[2]))
		if !ok {
			return f
		}
		fam := "IPV4"
		if to.Is6() {
			fam = "IPV6"
		}
		return []byte(fam + "/" + string(sm[1]) + "/" + to.String() + "/")
	})
	b = viaAddr.ReplaceAllFunc(b, func(f []byte) []byte {
		sm := viaAddr.FindSubmatch(f)
		if to, ok := lookup(string(sm[1])); ok {
			return []byte("ViaAddr: " + to.String() + "\r")
		}
		return f
	})
	return uriHost.ReplaceAllFunc(b, func(f []byte) []byte {
		sm := uriHost.FindSubmatch(f)
		to, ok := lookup(string(sm[2]))
		if !ok {
			return f
		}
		host := to.String()
		if to.Is6() {
			host = "[" + host + "]"
		}
		return []byte(string(sm[1]) + host + string(sm[3]))
	})
}

// withActionID sets every "ActionID: " line of a recorded answer to id.
func withActionID(block []byte, id string) []byte {
	lines := strings.SplitAfter(string(block), "\r\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "ActionID: ") {
			lines[i] = "ActionID: " + id + "\r\n"
		}
	}
	return []byte(strings.Join(lines, ""))
}
