package engine

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
)

// flowFW is the dry-run backend plus the optional flow droppers, recording
// what the engine asked.
type flowFW struct {
	*dryrun.Backend
	mu    sync.Mutex
	flows []string
	bulk  [][]netip.Addr
}

func (f *flowFW) DropFlow(_ context.Context, proto string, remote, local netip.AddrPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.flows = append(f.flows, proto+" "+remote.String()+" "+local.String())
	return nil
}

func (f *flowFW) DropFlowsOf(_ context.Context, addrs []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bulk = append(f.bulk, addrs)
	return nil
}

var (
	_ firewall.FlowDropper     = (*flowFW)(nil)
	_ firewall.BulkFlowDropper = (*flowFW)(nil)
)

// After a ban: the event's own flow is cut by tuple, the address's other
// flows are flushed, and its calls are hung up.
func TestPostBan(t *testing.T) {
	var mu sync.Mutex
	var hung []netip.Addr
	hangup := func(_ context.Context, a netip.Addr) error {
		mu.Lock()
		hung = append(hung, a)
		mu.Unlock()
		return nil
	}
	var ffw *flowFW
	r := newRig(t, rigOpt{deps: func(d *Deps) {
		ffw = &flowFW{Backend: d.Firewall.(*dryrun.Backend)}
		d.Firewall = ffw
		d.Hangup = hangup
	}})
	r.feed(loadEvents(t, "ami-s1-scanner-register.raw", recordedMap))
	r.sync()
	ffw.mu.Lock()
	flows := ffw.flows
	ffw.mu.Unlock()
	if len(flows) != 1 || flows[0] != "udp 203.0.113.11:5070 127.0.0.1:5060" {
		t.Errorf("flows cut by tuple: %q", flows)
	}
	dropped := false
	for _, op := range r.fw.Ops() {
		if op.Verb == "dropflows" && op.Entries[0].Prefix.Addr() == netip.MustParseAddr("203.0.113.11") {
			dropped = true
		}
	}
	if !dropped && len(ffw.bulk) == 0 {
		t.Error("the banned address's other flows were not flushed")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hung) != 1 || hung[0] != netip.MustParseAddr("203.0.113.11") {
		t.Errorf("hung up %v", hung)
	}
}
