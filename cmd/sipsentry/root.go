package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sipsentry/sipsentry/cmd/internal/cliexit"
	"github.com/sipsentry/sipsentry/internal/config"
)

// defaultConfigPath is --config's default; a variable so tests can point
// it away from the machine's own /etc.
var defaultConfigPath = config.DefaultPath

// globalOptions are the flags every command shares.
type globalOptions struct {
	configPath string
	logLevel   string
	logJSON    bool
	// command is the path of the command being run ("sipsentry run"), set
	// before it runs: only the daemon logs JSON by default.
	command string
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "sipsentry",
		Short: "Security companion for the Asterisk PBX",
		Long: `sipsentry reads Asterisk's security events over AMI, bans attackers in the
kernel a few milliseconds after the attempt, keeps a country allow-list fresh
and learns the push servers that register for your users' phones.

Exit status: 0 success, 1 the command ran and failed, 2 bad usage, bad
config or bad input (nothing was changed).`,
		Version:       versionString(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("sipsentry {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVarP(&g.configPath, "config", "c", defaultConfigPath, "configuration `FILE`")
	f.StringVar(&g.logLevel, "log-level", "", "override log.level (debug, info, warn, error)")
	f.BoolVar(&g.logJSON, "log-json", false, "log JSON lines to stderr (the default only for `run` when stderr is not a terminal)")
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		g.command = cmd.CommandPath()
		return nil
	}

	root.AddCommand(
		newRunCommand(g),
		newStatusCommand(g),
		newSourcesCommand(g),
		newAMICommand(g),
		newLookupCommand(g),
		newListsCommand(g),
		newFirewallCommand(g),
		newBanCommand(g),
		newUnbanCommand(g),
		newAllowCommand(g),
		newDisallowCommand(g),
		newBansCommand(g),
		newAllowsCommand(g),
		newDoctorCommand(g),
		newConfigCommand(g),
		newManCommand(root),
		newVersionCommand(),
	)
	// Argument-count errors of every command exit 2, like flag errors.
	cliexit.TypeArgs(root)
	return root
}

// isFlagError reports cobra's own usage errors (unknown command or flag,
// wrong argument count, flag groups).
func isFlagError(err error) bool { return cliexit.IsCobraUsage(err) }

// loadConfig reads --config. When the file is the default one and absent,
// commands that can run on built-in defaults get them (optional = true).
func (g *globalOptions) loadConfig(cmd *cobra.Command, optional bool) (*config.Config, error) {
	c, err := config.Load(g.configPath)
	if err == nil {
		return c, nil
	}
	if optional && !cmd.Flags().Changed("config") {
		if _, statErr := os.Stat(g.configPath); errors.Is(statErr, fs.ErrNotExist) {
			return config.Default(), nil
		}
	}
	var ce *config.Error
	if errors.As(err, &ce) || errors.Is(err, config.ErrInsecure) || errors.Is(err, config.ErrUnsafeOwner) {
		return nil, usageError{err}
	}
	return nil, err
}

// logger builds the process logger. The daemon (`run`) follows log.format:
// text on a terminal, JSON otherwise (journald). Every one-shot command
// logs plain human lines (no timestamps) unless --log-json asks for JSON.
func (g *globalOptions) logger(c *config.Config) *slog.Logger { return g.loggerTo(os.Stderr, c) }

func (g *globalOptions) loggerTo(w io.Writer, c *config.Config) *slog.Logger {
	level := c.Log.Level
	if g.logLevel != "" {
		level = g.logLevel
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if g.logJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	if !g.isDaemon() {
		return humanLogger(w, lv)
	}
	format := c.Log.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "text"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// isDaemon reports whether the command being run is `run`.
func (g *globalOptions) isDaemon() bool {
	return g.command == "sipsentry run"
}

// notBuilt is the placeholder of a command whose issue is still open.
func notBuilt(name string) error {
	return fmt.Errorf("%s is not built yet in this version", name)
}
