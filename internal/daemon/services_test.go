package daemon

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/internal/metrics"
)

// Issue 9/10: a ban set flushed behind the daemon's back is repaired by the
// verifier within one interval, counted per object, and the firewall's
// health condition stays clear once repaired.
func TestVerifierRepairsAFlushedBanSet(t *testing.T) {
	fw := dryrun.New(dryrun.Options{Mode: "enforce", MaxElem: 100})
	d := statusDaemonWith(t, 3, fw)
	ctx := context.Background()
	if err := fw.Replace(ctx, firewall.SetBan, nil); err != nil { // ipset flush
		t.Fatal(err)
	}
	if ok, _ := fw.Contains(ctx, firewall.SetBan, benchAddr(1)); ok {
		t.Fatal("the flush did not empty the set")
	}
	d.verifyOnce(ctx)
	for i := range 3 {
		if ok, _ := fw.Contains(ctx, firewall.SetBan, benchAddr(i)); !ok {
			t.Errorf("ban of %s not repaired", benchAddr(i))
		}
	}
	if n := d.repairs.Count("ban-v4"); n != 1 {
		t.Errorf(`sipsentry_firewall_repairs_total{object="ban-v4"} = %d, want 1`, n)
	}
	if deg := d.degraded(); deg[metrics.CondFirewall] != "" {
		t.Errorf("firewall condition after a repair: %q", deg[metrics.CondFirewall])
	}
}

// A check that cannot run turns the firewall condition on (503), and a
// clean pass clears it.
func TestVerifierFailureIsDegraded(t *testing.T) {
	fw := &failingVerifier{Backend: dryrun.New(dryrun.Options{Mode: "enforce", MaxElem: 100})}
	d := statusDaemonWith(t, 1, fw)
	fw.err = errors.New("netlink: operation not permitted")
	d.verifyOnce(context.Background())
	code, body := request(d.met.Handler(d.status), "/healthz")
	if code != 503 || !strings.Contains(body, "operation not permitted") {
		t.Errorf("/healthz after a failed verify = %d %q", code, body)
	}
	fw.err = nil
	d.verifyOnce(context.Background())
	if code, body := request(d.met.Handler(d.status), "/healthz"); code != 200 {
		t.Errorf("/healthz after a clean verify = %d %q", code, body)
	}
}

type failingVerifier struct {
	*dryrun.Backend
	err error
}

func (f *failingVerifier) Verify(ctx context.Context, want firewall.Desired, repair bool) (firewall.Drift, error) {
	if f.err != nil {
		return firewall.Drift{}, f.err
	}
	return f.Backend.Verify(ctx, want, repair)
}

// serve starts every service and awaits each: one that fails ends the
// daemon with its name in the error; one marked ends stops the others.
func TestServeAwaitsEveryService(t *testing.T) {
	d := statusDaemon(t, 1)
	stopped := make(chan string, 4)
	long := func(name string) service {
		return service{name: name, run: func(ctx context.Context) error { <-ctx.Done(); stopped <- name; return nil }}
	}
	err := d.serve(context.Background(), []service{long("a"), long("b"),
		{name: "metrics", run: func(context.Context) error { return errors.New("listener closed") }}})
	if err == nil || err.Error() != "metrics: listener closed" {
		t.Errorf("serve = %v, want the failing service's error", err)
	}
	if len(stopped) != 2 {
		t.Errorf("%d services were awaited, want 2", len(stopped))
	}
	err = d.serve(context.Background(), []service{long("a"),
		{name: "replay", ends: true, run: func(context.Context) error { return nil }}})
	if err != nil || len(stopped) != 3 {
		t.Errorf("a service marked ends: serve = %v, %d stopped", err, len(stopped))
	}
}

// Issue 10: `iptables -F SIPSENTRY` left /healthz ok. Rules removed behind
// the daemon's back are re-created by the next pass and /healthz says so
// (503 with the reason) until a pass finds them intact.
func TestVerifierReportsRemovedRules(t *testing.T) {
	fw := dryrun.New(dryrun.Options{Mode: "enforce", MaxElem: 100})
	d := statusDaemonWith(t, 2, fw)
	ctx := context.Background()
	d.verifyOnce(ctx)
	if code, body := request(d.met.Handler(d.status), "/healthz"); code != 200 {
		t.Fatalf("/healthz with everything in place = %d %q", code, body)
	}
	if err := fw.Down(ctx); err != nil { // the chain and its jump gone (and the sets flushed)
		t.Fatal(err)
	}
	d.verifyOnce(ctx)
	code, body := request(d.met.Handler(d.status), "/healthz")
	if code != 503 || !strings.Contains(body, "re-created") {
		t.Errorf("/healthz after the rules were removed = %d %q", code, body)
	}
	if ok, _ := fw.Contains(ctx, firewall.SetBan, benchAddr(1)); !ok {
		t.Error("the bans were not restored with the rules")
	}
	d.verifyOnce(ctx)
	if code, body := request(d.met.Handler(d.status), "/healthz"); code != 200 {
		t.Errorf("/healthz after a clean pass = %d %q", code, body)
	}
}
