//go:build mangen

// The man page generator is built only with -tags mangen (packaging/build.sh
// does): cobra/doc links go-md2man and blackfriday, whose init maps cost the
// daemon ~1 MB of heap for a command it never runs (issue 11).

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

type manOptions struct {
	dir     string
	section string
}

// newManCommand writes one roff man page per command, generated from the
// command tree itself so the pages never drift from the flags. Hidden: the
// installed binary does not have it, so the pages do not document it.
func newManCommand(root *cobra.Command) *cobra.Command {
	opts := &manOptions{}
	cmd := &cobra.Command{
		Use:    "man --dir DIR",
		Hidden: true,
		Short:  "Write man pages for every command into DIR",
		Long: `Write one roff man page per command (sipsentry.8, sipsentry-run.8, ...)
into DIR, generated from the command tree. Only in a build with -tags mangen;
from a source tree install them with e.g.

    go run -tags mangen ./cmd/sipsentry man --dir /usr/local/share/man/man8 && mandb

The page date is today's, or SOURCE_DATE_EPOCH's when that is set (for
reproducible packages).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMan(cmd, opts, root)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.dir, "dir", "", "write the pages into `DIR` (created if missing)")
	f.StringVar(&opts.section, "section", "8", "man `SECTION` (8: system administration)")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func runMan(cmd *cobra.Command, opts *manOptions, root *cobra.Command) error {
	if opts.dir == "" {
		return usagef("man: --dir DIR is required")
	}
	if err := os.MkdirAll(opts.dir, 0o755); err != nil {
		return fmt.Errorf("man: %w", err)
	}
	// The generated footer would otherwise carry today's date and make every
	// build's pages differ.
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{
		Title:   "SIPSENTRY",
		Section: opts.section,
		Source:  "sipsentry " + versionString(),
		Manual:  "sipsentry manual",
	}
	if err := doc.GenManTree(root, header, opts.dir); err != nil {
		return fmt.Errorf("man: writing pages into %s: %w", opts.dir, err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote man pages into %s\n", opts.dir)
	return nil
}
