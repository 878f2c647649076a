package fwopen

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
)

func TestOpen(t *testing.T) {
	var out bytes.Buffer
	o := Options{Backend: DryRun, DryRunOut: &out}
	o.Mode = firewall.ModeEnforce
	b, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*dryrun.Backend); !ok {
		t.Fatalf("dry-run gave %T", b)
	}
	if err := b.Up(context.Background()); err != nil || !strings.Contains(out.String(), "dry-run: up") {
		t.Fatalf("dry-run Up: %v, printed %q", err, out.String())
	}
	if st, err := b.Status(context.Background()); err != nil || st.Mode != "enforce" {
		t.Fatalf("dry-run Status: %+v, %v; want mode enforce from the options", st, err)
	}
	o.Backend = "nftables"
	if _, err := Open(o); err == nil || !strings.Contains(err.Error(), `unknown firewall.backend "nftables"`) {
		t.Fatalf("unknown backend: %v", err)
	}
}
