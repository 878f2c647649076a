package fwopen

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/internal/config"
)

func TestOpen(t *testing.T) {
	cfg := config.Default().Firewall
	cfg.Backend = "dry-run"
	var out bytes.Buffer
	b, err := Open(cfg, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := b.(*dryrun.Backend); !ok {
		t.Fatalf("dry-run gave %T", b)
	}
	if err := b.Up(context.Background()); err != nil || !strings.Contains(out.String(), "dry-run: up") {
		t.Fatalf("dry-run Up: %v, printed %q", err, out.String())
	}
	cfg.Backend = "nftables"
	if _, err := Open(cfg, nil, nil); err == nil || !strings.Contains(err.Error(), `unknown firewall.backend "nftables"`) {
		t.Fatalf("unknown backend: %v", err)
	}
}
