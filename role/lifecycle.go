package role

import (
	"context"
	"strings"
	"sync"
	"time"
)

// readyEvery is how often a process looks at its readiness, to log each
// change of it.
var readyEvery = time.Second

// readiness logs each change of a process's readiness once, with the
// reason when it is not ready: not per probe, and not per request.
type readiness struct {
	p    *Process
	mu   sync.Mutex
	last string // "ready", or why not; "" before the first look
	stop chan struct{}
	done chan struct{}
}

// watchReadiness looks at p's readiness every readyEvery until stopped.
func (p *Process) watchReadiness() *readiness {
	r := &readiness{p: p, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		t := time.NewTicker(readyEvery)
		defer t.Stop()
		for {
			r.look()
			select {
			case <-r.stop:
				return
			case <-t.C:
			}
		}
	}()
	return r
}

// look checks readiness now and logs it if it changed. One look at a
// time: a slow one cannot log an older state after a newer one.
func (r *readiness) look() {
	r.mu.Lock()
	defer r.mu.Unlock()
	state := "ready"
	if err := r.p.admin.Ready(context.Background()); err != nil {
		state = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	r.setLocked(state)
}

func (r *readiness) set(state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.setLocked(state)
}

func (r *readiness) setLocked(state string) {
	if state == r.last {
		return
	}
	r.last = state
	if state == "ready" {
		r.p.log.Info("ready")
	} else {
		r.p.log.Info("not ready", "reason", state)
	}
}

// close stops looking; the process is stopping, which it logs as its
// last change.
func (r *readiness) close() {
	close(r.stop)
	<-r.done
	r.set("stopping")
}

// since is a step's duration as logged: to the millisecond's tenth.
func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Microsecond) }
