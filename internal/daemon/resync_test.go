package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
	"github.com/sipsentry/sipsentry/engine"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
)

type homeGeo struct{ home netip.Prefix }

func (g homeGeo) Allowed(a netip.Addr) bool { return g.home.Contains(a) }

type failingDNS struct{}

func (failingDNS) LookupPTR(context.Context, netip.Addr) ([]string, error) {
	return nil, errors.New("no DNS")
}
func (failingDNS) LookupAddrs(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS")
}

// TestOnAMIConnectResync: the daemon's own OnConnect hands the contacts of
// every login to the engine's push learner: a push server registered at
// the fake Asterisk (amitest) is learned into the allow set, an in-country
// phone is not examined.
func TestOnAMIConnectResync(t *testing.T) {
	srv := amitest.NewServer(t, amitest.Options{Contacts: []ami.Contact{
		{ObjectName: "1001;@aa", Endpoint: "1001", URI: "sip:1001@203.0.113.31:5062", UserAgent: "Bria Push Service", ViaAddr: "203.0.113.31", ViaPort: "5062"},
		{ObjectName: "1001;@bb", Endpoint: "1001", URI: "sip:1001@198.51.100.21:5060", UserAgent: "Bria iOS", ViaAddr: "198.51.100.21", ViaPort: "5060"},
	}})
	fw := dryrun.New(dryrun.Options{Mode: "enforce"})
	o := engine.DefaultOptions()
	o.Enforce, o.GeoMode = true, engine.GeoDrop
	eng, err := engine.New(o, engine.Deps{Firewall: fw, Geo: homeGeo{netip.MustParsePrefix("198.51.100.0/24")}, Resolver: failingDNS{},
		HostAddrs: []netip.Addr{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()
	defer func() { cancel(); <-engDone }()

	d := &daemon{eng: eng, log: slog.New(slog.DiscardHandler)}
	connected := make(chan struct{}, 1)
	cl := ami.NewClient(ami.ClientConfig{Address: srv.Addr(), Username: "sentry", Secret: "sentry-secret", MD5: true,
		OnConnect: func(ctx context.Context, c *ami.Client) error {
			err := d.onAMIConnect(ctx, c)
			connected <- struct{}{}
			return err
		}})
	clDone := make(chan error, 1)
	go func() { clDone <- cl.Run(ctx) }()
	defer func() { cancel(); <-clDone }()
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		t.Fatal("no login")
	}
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := eng.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	if ok, _ := fw.Contains(ctx, firewall.SetAllow, netip.MustParseAddr("203.0.113.31")); !ok {
		t.Error("push server from the login's contacts not learned")
	}
	st := eng.Snapshot()
	if st.Decisions[engine.DecisionLearned] != 1 || st.Decisions[engine.DecisionFlagged] != 0 {
		t.Errorf("decisions %v: want one learned, nothing flagged", st.Decisions)
	}
}
