package nanobustest

import (
	"bytes"
	"sync"
)

// Logs is a log sink a test reads while the code under test writes to it
// from its own goroutines: slog.New(slog.NewTextHandler(&logs, nil)).
type Logs struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
