package limit

import (
	"testing"
	"time"
)

// queued starts Admit in a goroutine for each of ids, in order, each once
// the one before waits; the returned channel gets the id of each admitted
// one, and -id for each refused.
func queued(t *testing.T, l *Limiter, ids ...int) <-chan int {
	t.Helper()
	out := make(chan int, len(ids))
	for _, id := range ids {
		before := l.Waiting()
		go func() {
			if l.Admit() {
				out <- id
			} else {
				out <- -id
			}
		}()
		waitFor(t, func() bool { return l.Waiting() == before+1 }, "waiter %d to queue", id)
	}
	return out
}

func waitFor(t *testing.T, cond func() bool, what string, args ...any) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for "+what, args...)
		}
	}
}

func next(t *testing.T, got <-chan int) int {
	t.Helper()
	select {
	case id := <-got:
		return id
	case <-time.After(5 * time.Second):
		t.Fatal("no waiter answered")
		return 0
	}
}

// full takes the limiter's one slot.
func full(t *testing.T, q Queue) *Limiter {
	t.Helper()
	l := New(1, 1, 1)
	l.SetQueue(q)
	if !l.Admit() {
		t.Fatal("the first piece of work was refused")
	}
	return l
}

func TestQueueOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		policy   Policy
		standing bool
		want     []int
	}{
		{"fifo", FIFO, false, []int{1, 2, 3}},
		{"codel while the queue comes and goes", CoDel, false, []int{1, 2, 3}},
		{"codel standing: newest first", CoDel, true, []int{3, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := full(t, Queue{Policy: tc.policy, Interval: time.Hour, Target: 30 * time.Minute})
			got := queued(t, l, 1, 2, 3)
			if tc.standing {
				l.q.mu.Lock()
				l.q.standing, l.q.since = true, time.Now().UnixNano()
				l.q.mu.Unlock()
			}
			for _, want := range tc.want {
				l.Release(time.Millisecond)
				if id := next(t, got); id != want {
					t.Fatalf("handed to %d, want %d", id, want)
				}
			}
			if l.InFlight() != 1 || l.Waiting() != 0 {
				t.Fatalf("in flight %d, waiting %d; want 1, 0", l.InFlight(), l.Waiting())
			}
		})
	}
}

// A waiter no release reaches is refused after its longest wait, with no
// Admit or Release to notice: the queue's tick does. It leaves no trace.
func TestQueueExpires(t *testing.T) {
	l := full(t, Queue{Policy: CoDel, Interval: 20 * time.Millisecond, Target: 5 * time.Millisecond})
	got := queued(t, l, 1)
	if id := next(t, got); id != -1 {
		t.Fatalf("got %d, want a refusal", id)
	}
	if expired, _ := l.Refused(); expired != 1 || l.InFlight() != 1 || l.Waiting() != 0 {
		t.Fatalf("expired %d, in flight %d, waiting %d; want 1, 1, 0", expired, l.InFlight(), l.Waiting())
	}
	waitFor(t, func() bool { l.q.mu.Lock(); defer l.q.mu.Unlock(); return !l.q.ticking }, "the tick to end")
}

// Work that waited past Interval makes the queue stand: from then on work
// waits Target at most, and the newest goes first.
func TestQueueStands(t *testing.T) {
	l := full(t, Queue{Policy: CoDel, Interval: time.Hour, Target: time.Minute})
	got := queued(t, l, 1, 2)
	l.q.mu.Lock()
	l.q.ring[l.q.head].since -= int64(2 * time.Hour) // 1 waited past Interval
	l.q.mu.Unlock()
	more := make(chan int, 1)
	go func() {
		if l.Admit() {
			more <- 3
		}
	}()
	if id := next(t, got); id != -1 {
		t.Fatalf("got %d, want 1 refused", id)
	}
	waitFor(t, func() bool { return l.Waiting() == 2 }, "waiter 3 to queue")
	l.q.mu.Lock()
	standing := l.q.standing
	l.q.mu.Unlock()
	if !standing {
		t.Fatal("the queue does not stand after work waited past Interval")
	}
	l.Release(time.Millisecond)
	if id := next(t, more); id != 3 {
		t.Fatalf("handed to %d, want the newest, 3", id)
	}
	// The queue empties: arrival order again.
	l.Release(time.Millisecond)
	if id := next(t, got); id != 2 {
		t.Fatalf("handed to %d, want 2", id)
	}
	l.Release(time.Millisecond)
	l.q.mu.Lock()
	l.q.expire(time.Now().UnixNano())
	standing = l.q.standing
	l.q.mu.Unlock()
	if standing {
		t.Fatal("the queue still stands once empty")
	}
}

// A standing queue that turned away more than twice what it served over an
// Interval serves its clients in arrival order again: they come straight
// back (a closed loop), and refusing them sheds nothing.
func TestQueueStandingGivesUpOnClosedLoop(t *testing.T) {
	for _, tc := range []struct {
		served, rejected int
		want             bool
	}{{10, 20, true}, {10, 21, false}, {0, 0, true}} {
		l := full(t, Queue{Policy: CoDel, Interval: time.Second, Target: time.Millisecond})
		got := queued(t, l, 1)
		now := time.Now().UnixNano()
		l.q.mu.Lock()
		l.q.standing, l.q.since, l.q.served, l.q.rejected = true, now-int64(2*time.Second), tc.served, tc.rejected
		l.q.ring[l.q.head].since = now // not expired
		l.q.expire(now)
		standing := l.q.standing
		l.q.mu.Unlock()
		if standing != tc.want {
			t.Errorf("served %d rejected %d: standing %v, want %v", tc.served, tc.rejected, standing, tc.want)
		}
		l.Release(time.Millisecond)
		if id := next(t, got); id != 1 {
			t.Fatalf("handed to %d, want 1", id)
		}
	}
}

func TestQueueRefusesAtOnce(t *testing.T) {
	// Without an interval there is no queue.
	l := full(t, Queue{Policy: CoDel})
	if l.Admit() || l.Waiting() != 0 {
		t.Fatal("admitted or queued over the limit without a queue")
	}
	// Max waiting: the next is turned away at once.
	l = full(t, Queue{Policy: CoDel, Interval: time.Hour, Max: 1})
	got := queued(t, l, 1)
	if l.Admit() {
		t.Fatal("admitted over Max waiting")
	}
	if _, turned := l.Refused(); turned != 1 {
		t.Fatalf("turned away %d, want 1", turned)
	}
	l.Release(time.Millisecond)
	if id := next(t, got); id != 1 {
		t.Fatalf("handed to %d, want 1", id)
	}
}

// Work on behalf of admitted work may use twice the limit; new work not.
func TestAcquireNested(t *testing.T) {
	l := New(2, 2, 2)
	for i := range 2 {
		if !l.Acquire() {
			t.Fatalf("new work %d refused under the limit", i)
		}
	}
	if l.Acquire() {
		t.Fatal("new work admitted over the limit")
	}
	for i := range 2 {
		if !l.AcquireNested() {
			t.Fatalf("nested work %d refused under twice the limit", i)
		}
	}
	if l.AcquireNested() || l.InFlight() != 4 {
		t.Fatalf("nested work admitted over twice the limit (in flight %d)", l.InFlight())
	}
}
