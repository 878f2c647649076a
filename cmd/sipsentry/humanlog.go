package main

import (
	"io"
	"log/slog"
)

// humanLogger logs the way a one-shot command talks to a person: the level
// and the message, then the attributes, without a timestamp. slog's text
// handler already quotes values, so an address or a name from the network
// cannot forge a line.
func humanLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
}
