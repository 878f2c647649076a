// Command sipsentry-report is `sipsentry sources` for logs only: the same
// report, flags and exit codes, in a binary that does not link the daemon's
// parts (the SQLite state store, the firewall, the AMI client), so that
//
//	go run -v ./cmd/sipsentry-report --from-log contrib/sample/security.log --lists-dir contrib/sample/lists
//
// compiles in about half the time of the full binary on a fresh machine.
// To read the daemon's DB use `sipsentry sources`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sipsentry/sipsentry/cmd/internal/cliexit"
	"github.com/sipsentry/sipsentry/cmd/internal/sourcescmd"
	"github.com/sipsentry/sipsentry/internal/config"
)

// version is set by the linker (-X main.version=...); otherwise the module
// build info is used.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRootCommand().ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "sipsentry-report: %v\n", err)
	}
	os.Exit(cliexit.Code(err))
}

func newRootCommand() *cobra.Command {
	var configPath string
	cmd := sourcescmd.New("sipsentry-report --from-log FILE... [flags]", sourcescmd.Env{
		LoadConfig: func(cmd *cobra.Command) (*config.Config, error) {
			c, err := config.Load(configPath)
			if err == nil {
				return c, nil
			}
			if !cmd.Flags().Changed("config") {
				if _, statErr := os.Stat(configPath); errors.Is(statErr, fs.ErrNotExist) {
					return config.Default(), nil
				}
			}
			return nil, cliexit.UsageError{Err: err}
		},
		Prog: "sipsentry-report",
	})
	cmd.Short = "The sipsentry sources report from Asterisk security logs, without the daemon's parts"
	cmd.Version = versionString()
	cmd.SetVersionTemplate("sipsentry-report {{.Version}}\n")
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cliexit.UsageError{Err: err} })
	cmd.Flags().StringVarP(&configPath, "config", "c", config.DefaultPath, "configuration `FILE` (its [geo] and [firewall] tables are used; absent is fine)")
	cmd.CompletionOptions.DisableDefaultCmd = true
	cliexit.TypeArgs(cmd)
	return cmd
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version + " " + bi.GoVersion
	}
	return "unknown"
}
