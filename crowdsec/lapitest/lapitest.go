// Package lapitest starts a real CrowdSec Local API (Debian's crowdsec
// package) for tests: its own config and SQLite DB in a temp dir, LAPI only
// (-no-cs -no-capi), on a free loopback port, stopped when the test ends.
// It is for tests only; it never talks to anything but loopback.
package lapitest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/internal/netnstest"
)

// LAPI is a running Local API.
type LAPI struct {
	URL    string // http://127.0.0.1:PORT/ (or the namespace address)
	Dir    string
	config string
	t      testing.TB
	stop   func()
	ns     *netnstest.NS
}

// Options place the LAPI; the zero value is host loopback.
type Options struct {
	// NS runs the LAPI (and cscli) inside that namespace, listening on
	// ListenIP, so that daemons in other namespaces reach it over veths.
	NS       *netnstest.NS
	ListenIP string
}

// Start runs a LAPI on host loopback; without the crowdsec binary the test
// skips (fails under CI=true).
func Start(t testing.TB) *LAPI { return StartWith(t, Options{}) }

// StartWith runs a LAPI placed by o.
func StartWith(t testing.TB, o Options) *LAPI {
	t.Helper()
	netnstest.RequireTool(t, "crowdsec", "cscli")
	dir := t.TempDir()
	for _, d := range []string{"data", "etc/notifications"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"profiles.yaml", "simulation.yaml"} {
		b, err := os.ReadFile(filepath.Join("/etc/crowdsec", f))
		if err != nil {
			t.Fatalf("lapitest: %v (is Debian's crowdsec package installed?)", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "etc", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	ip := "127.0.0.1"
	if o.NS != nil {
		ip, port = o.ListenIP, 18080 // the namespace is the LAPI's alone
	}
	cfg := filepath.Join(dir, "config.yaml")
	conf := fmt.Sprintf(`common: {daemonize: false, log_media: stdout, log_level: warning, working_dir: %[1]s}
config_paths:
  config_dir: %[1]s/etc/
  data_dir: %[1]s/data/
  simulation_path: %[1]s/etc/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: %[1]s/etc/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
db_config: {type: sqlite, db_path: %[1]s/data/crowdsec.db, use_wal: true, log_level: warning}
api:
  client: {credentials_path: %[1]s/local_api_credentials.yaml}
  server:
    listen_uri: %[3]s:%[2]d
    profiles_path: %[1]s/etc/profiles.yaml
    console_path: %[1]s/etc/console.yaml
    trusted_ips: [127.0.0.1, "::1"]
prometheus: {enabled: false, level: full, listen_addr: 127.0.0.1, listen_port: 16060}
`, dir, port, ip)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &LAPI{URL: fmt.Sprintf("http://%s/", net.JoinHostPort(ip, fmt.Sprint(port))), Dir: dir, config: cfg, t: t, ns: o.NS}
	l.start()
	// cscli needs credentials of its own to list decisions through the API.
	l.Cscli("machines", "add", "lapitest-cscli", "-a", "-f", filepath.Join(dir, "local_api_credentials.yaml"))
	return l
}

func (l *LAPI) start() {
	t := l.t
	logf, err := os.Create(filepath.Join(l.Dir, "lapi.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("crowdsec", "-c", l.config, "-no-cs", "-no-capi")
	cmd.Stdout, cmd.Stderr = logf, logf
	start := cmd.Start
	if l.ns != nil {
		start = func() error { return l.ns.Do(cmd.Start) }
	}
	if err := start(); err != nil {
		t.Fatalf("lapitest: start crowdsec: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	client := &http.Client{Timeout: 2 * time.Second}
	if l.ns != nil {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := l.ns.Do(func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		}}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(l.URL + "health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-done:
			b, _ := os.ReadFile(filepath.Join(l.Dir, "lapi.log"))
			t.Fatalf("lapitest: crowdsec exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(l.Dir, "lapi.log"))
			t.Fatalf("lapitest: LAPI not up after 30s:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.stop = func() {
		stopped = true
		_ = cmd.Process.Kill()
		<-done
	}
}

// Stop kills the LAPI (an outage); Restart brings it back on the same port
// and database.
func (l *LAPI) Stop()    { l.stop() }
func (l *LAPI) Restart() { l.start() }

// Cscli runs cscli on this LAPI's config and returns its stdout.
func (l *LAPI) Cscli(args ...string) string {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append([]string{"cscli", "-c", l.config}, args...)
	if l.ns != nil {
		// cscli talks to the LAPI for some verbs: run it where the LAPI is.
		argv = append([]string{"ip", "netns", "exec", l.ns.Name}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		l.t.Fatalf("lapitest: cscli %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// AddMachine registers a watcher with a generated password and writes its
// credentials file (0600).
func (l *LAPI) AddMachine(name string) string {
	path := filepath.Join(l.Dir, name+".yaml")
	l.Cscli("machines", "add", name, "-a", "-f", path) // -a: a generated password, never on argv
	if err := os.Chmod(path, 0o600); err != nil {
		l.t.Fatal(err)
	}
	return path
}

// AddBouncer registers a bouncer and writes its API key file (0600).
func (l *LAPI) AddBouncer(name string) string {
	key := strings.TrimSpace(l.Cscli("bouncers", "add", name, "-o", "raw"))
	path := filepath.Join(l.Dir, name+".key")
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return path
}

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
