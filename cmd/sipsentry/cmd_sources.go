package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/activity"
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
	at := make(map[netip.Addr]int, len(recs))
	for i, r := range recs {
		// Loopback is the PBX itself (AMI clients, local tools).
		out[i] = report.Input{Source: r.Source, Status: r.Status, BannedUntil: r.BannedUntil, Offences: r.Offences, Note: r.Note,
			Local: r.Source.Addr.IsLoopback()}
		at[r.Source.Addr] = i
	}
	// What the firewall dropped (drop mode's NFLOG copies): a source seen
	// only there is a row of its own with status dropped; one Asterisk saw
	// too gets the packets in its note.
	drops, err := st.DroppedSources(ctx, time.Time{})
	if err != nil {
		return nil, err
	}
	for _, d := range drops {
		note := droppedNote(d)
		if i, ok := at[d.Addr]; ok {
			out[i].Note = strings.TrimPrefix(out[i].Note+"; "+note, "; ")
			continue
		}
		out = append(out, report.Input{Source: activity.Source{Addr: d.Addr, FirstSeen: d.FirstSeen, LastSeen: d.LastSeen,
			LastUserAgent: d.UserAgent}, Status: report.StatusDropped, Note: note})
	}
	return out, nil
}

// droppedNote says what the firewall dropped from a source: packets, the
// SIP methods seen, the push state of a push candidate.
func droppedNote(d state.DroppedSource) string {
	note := fmt.Sprintf("dropped at the firewall: %d packets", d.Packets)
	if len(d.Methods) > 0 {
		note += " (" + strings.Join(d.Methods, ", ") + ")"
	}
	if len(d.Reasons) > 0 {
		note += ", by " + strings.Join(d.Reasons, " and ")
	}
	if d.Push != "" {
		note += ", push candidate: " + d.Push
	}
	return note
}
