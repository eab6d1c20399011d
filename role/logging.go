package role

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// LogConfig is how a process logs: text (logfmt) or JSON lines, from a
// level up. The level lives in a slog.LevelVar, so that it can change
// while the process runs (SetLevel).
type LogConfig struct {
	Format string // "text" (default) or "json"
	level  *slog.LevelVar
}

func (c *LogConfig) registerFlags(fs *flag.FlagSet) {
	if c.Format == "" {
		c.Format = "text"
	}
	c.Level() // made now: copies of the config share it
	fs.Func("log-format", "log lines `format`: text (key=value) or json (one object a line) (default text)", func(s string) error {
		switch s {
		case "text", "json":
			c.Format = s
			return nil
		}
		return fmt.Errorf("%q: want text or json", s)
	})
	fs.Func("log-level", "lowest `level` logged: debug, info, warn or error (default info)", c.SetLevel)
}

// Level is the level logged from; info unless set.
func (c *LogConfig) Level() *slog.LevelVar {
	if c.level == nil {
		c.level = new(slog.LevelVar)
	}
	return c.level
}

// SetLevel sets the level logged from, by name: debug, info, warn or
// error. Loggers made by NewLogger follow it at once.
func (c *LogConfig) SetLevel(name string) error {
	var l slog.Level
	switch strings.ToLower(name) {
	case "debug":
		l = slog.LevelDebug
	case "info":
		l = slog.LevelInfo
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return fmt.Errorf("%q: want debug, info, warn or error", name)
	}
	c.Level().Set(l)
	return nil
}

// NewLogger returns a logger writing to w in c's format, from c's level.
func (c *LogConfig) NewLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.Level()}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
