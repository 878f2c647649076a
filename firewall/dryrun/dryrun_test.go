package dryrun_test

import (
	"testing"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/firewall/dryrun"
	"github.com/sipsentry/sipsentry/firewall/fwtest"
)

func TestSuite(t *testing.T) {
	fwtest.Suite(t, func(t *testing.T) firewall.Backend { return dryrun.New(dryrun.Options{}) })
}
