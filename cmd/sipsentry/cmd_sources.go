package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/cmd/internal/sourcescmd"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/report"
	"github.com/sipsentry/sipsentry/state"
)

// newSourcesCommand wires the shared sources command (cmd/internal/sourcescmd)
// to this binary's config and to the state store, which only this binary
// links (sipsentry-report reads logs without it).
func newSourcesCommand(g *globalOptions) *cobra.Command {
	return sourcescmd.New("sources [--from-log FILE...]", sourcescmd.Env{
		LoadConfig: func(cmd *cobra.Command) (*config.Config, error) { return g.loadConfig(cmd, true) },
		ReadDB:     readStateDB,
		DBPath:     state.Path,
		Prog:       "sipsentry sources",
	})
}

// readStateDB reads the daemon's state DB read-only; WAL lets it do so
// while the daemon writes.
func readStateDB(ctx context.Context, path string) ([]report.Input, error) {
	st, err := state.OpenReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	recs, err := st.Sources(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]report.Input, len(recs))
	for i, r := range recs {
		// Loopback is the PBX itself (AMI clients, local tools).
		out[i] = report.Input{Source: r.Source, Status: r.Status, BannedUntil: r.BannedUntil, Offences: r.Offences, Note: r.Note,
			Local: r.Source.Addr.IsLoopback()}
	}
	return out, nil
}
