//go:build !mangen

package main

import "github.com/spf13/cobra"

// manGenHint says where the man pages come from in a build without the
// generator.
const manGenHint = "this sipsentry is built without the man page generator (it would cost the daemon ~1 MB of memory): " +
	"the packages install the pages (man sipsentry); from a source tree run " +
	"`go run -tags mangen ./cmd/sipsentry man --dir /usr/local/share/man/man8`"

// newManCommand is, in the daemon's build, a hidden command that tells
// whoever still types `sipsentry man` how to get the pages (cmd_man.go,
// built with -tags mangen, writes them).
func newManCommand(*cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:                "man",
		Hidden:             true,
		Short:              "Write man pages (only in a build with -tags mangen)",
		DisableFlagParsing: true,
		RunE:               func(*cobra.Command, []string) error { return usagef("man: %s", manGenHint) },
	}
}
