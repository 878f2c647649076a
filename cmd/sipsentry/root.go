package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/sipsentry/sipsentry/internal/config"
)

// defaultConfigPath is --config's default; a variable so tests can point
// it away from the machine's own /etc.
var defaultConfigPath = config.DefaultPath

// globalOptions are the flags every command shares.
type globalOptions struct {
	configPath string
	logLevel   string
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "sipsentry",
		Short: "Security companion for the Asterisk PBX",
		Long: `sipsentry reads Asterisk's security events over AMI, bans attackers in the
kernel within a millisecond, keeps a country allow-list fresh and learns the
push servers that register for your users' phones.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	f := root.PersistentFlags()
	f.StringVarP(&g.configPath, "config", "c", defaultConfigPath, "configuration `FILE`")
	f.StringVar(&g.logLevel, "log-level", "", "override log.level (debug, info, warn, error)")

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
		newDoctorCommand(g),
		newConfigCommand(g),
		newManCommand(root),
		newVersionCommand(),
	)
	return root
}

func isFlagError(err error) bool {
	return err != nil && (strings.HasPrefix(err.Error(), "unknown command") ||
		strings.HasPrefix(err.Error(), "unknown flag") ||
		strings.HasPrefix(err.Error(), "unknown shorthand flag"))
}

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

// logger builds the process logger: text on a terminal, JSON otherwise (journald).
func (g *globalOptions) logger(c *config.Config) *slog.Logger {
	level := c.Log.Level
	if g.logLevel != "" {
		level = g.logLevel
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	format := c.Log.Format
	if format == "auto" {
		format = "json"
		if term.IsTerminal(int(os.Stderr.Fd())) {
			format = "text"
		}
	}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// notBuilt is the placeholder of a command whose issue is still open.
func notBuilt(name string) error {
	return fmt.Errorf("%s is not built yet in this version", name)
}
