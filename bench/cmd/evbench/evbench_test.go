package main

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	b := stampBody(at, 7)
	if len(b) != bodySize {
		t.Fatalf("body of %d bytes, want %d", len(b), bodySize)
	}
	got, err := stampOf(b)
	if err != nil || !got.Equal(at) {
		t.Fatalf("stampOf = %v, %v; want %v", got, err, at)
	}
	if _, err := stampOf([]byte("short")); err == nil {
		t.Fatal("stampOf of a short body: no error")
	}
}

func TestRecorderWindow(t *testing.T) {
	r := newRecorder()
	r.record(stampBody(time.Now().Add(-time.Second), 1)) // before the window
	r.open()
	for range 10 {
		r.record(stampBody(time.Now().Add(-2*time.Millisecond), 1))
	}
	r.record([]byte("no stamp"))
	w := r.close()
	if w.Count != 10 || r.total.Load() != 11 || r.bad.Load() != 1 {
		t.Fatalf("window %d, total %d, bad %d; want 10, 11, 1", w.Count, r.total.Load(), r.bad.Load())
	}
	if w.P50 < 2000 || w.P99 > 1_000_000 {
		t.Fatalf("p50 %dµs, p99 %dµs: want 2 ms and more, under the second before the window", w.P50, w.P99)
	}
}

// waitCount waits (bounded) until the driver has published n events.
func waitCount(t *testing.T, d *driver, n int64) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); d.published.Load() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("published %d after 10s, want %d", d.published.Load(), n)
		}
	}
}

func TestDriverLoops(t *testing.T) {
	var mu sync.Mutex
	keys := map[string]bool{}
	d := &driver{keys: 4, publish: func(ctx context.Context, key string, body []byte) error {
		if _, err := stampOf(body); err != nil {
			return err
		}
		mu.Lock()
		keys[key] = true
		mu.Unlock()
		return nil
	}}
	var c counter
	c.open(d)
	d.start(4, 0) // closed loop
	waitCount(t, d, 200)
	d.start(2, 5000) // an open loop replaces it
	before := d.published.Load()
	waitCount(t, d, before+50)
	d.stop()
	w := c.close(d)
	if w.Count != d.published.Load() || w.Failed != 0 || len(keys) != 4 {
		t.Fatalf("window %+v of %d published, keys %v", w, d.published.Load(), keys)
	}
	after := d.published.Load()
	time.Sleep(5 * time.Millisecond)
	if d.published.Load() != after {
		t.Fatal("published after stop")
	}
}

func TestDriverCountsFailures(t *testing.T) {
	d := &driver{keys: 1, publish: func(context.Context, string, []byte) error { return errors.New("disk full") }}
	var c counter
	c.open(d)
	d.start(1, 0)
	for end := time.Now().Add(10 * time.Second); d.failed.Load() < 10 && time.Now().Before(end); time.Sleep(time.Millisecond) {
	}
	d.stop()
	if w := c.close(d); w.Failed < 10 || w.Count != 0 || w.LastError != "disk full" {
		t.Fatalf("window %+v, want failures with their error", w)
	}
}

func TestScheduleCatchesUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var due []time.Time
	schedule(ctx, 1000, func(at time.Time) {
		due = append(due, at)
		if len(due) == 1 {
			time.Sleep(20 * time.Millisecond) // a late wake-up: the next 20 come at once
		}
		if len(due) == 30 {
			cancel()
		}
	})
	for i := 1; i < len(due); i++ {
		if d := due[i].Sub(due[i-1]); d != time.Millisecond {
			t.Fatalf("slot %d is %v after the one before, want 1ms", i, d)
		}
	}
	if len(due) < 30 {
		t.Fatalf("%d slots, want 30", len(due))
	}
}

func TestReplaceSection(t *testing.T) {
	doc := "# results\n<!-- kept -->\nnotes\n"
	once := replaceSection(doc, "## Durable events\nv1\n")
	if !strings.HasPrefix(once, doc+"\n"+sectionBegin+"\n## Durable events\nv1\n"+sectionEnd+"\n") {
		t.Fatalf("appended:\n%s", once)
	}
	twice := replaceSection(once+"after\n", "## Durable events\nv2\n")
	if strings.Contains(twice, "v1") || !strings.Contains(twice, "v2\n"+sectionEnd+"\nafter\n") || strings.Count(twice, sectionBegin) != 1 {
		t.Fatalf("replaced:\n%s", twice)
	}
	if got := replaceSection("", "x\n"); got != sectionBegin+"\nx\n"+sectionEnd+"\n" {
		t.Fatalf("into nothing: %q", got)
	}
}

func TestPointArithmetic(t *testing.T) {
	p := point{HandledN: 1000, CPU: 500 * time.Millisecond, Window: time.Second}
	if p.CPUPerEvent() != 500 || p.PerCore() != 2000 || p.Busy() != 0.5 {
		t.Fatalf("per event %v, per core %v, busy %v", p.CPUPerEvent(), p.PerCore(), p.Busy())
	}
	if (point{}).CPUPerEvent() != 0 || (point{}).PerCore() != 0 {
		t.Fatal("an empty point divides by zero")
	}
}

func TestRowsPickTheQuietMedian(t *testing.T) {
	r := &runner{cfg: config{pin: true, noise: 0.10}}
	sec := time.Second
	r.points = []point{
		{Round: 1, System: "pebble", Handled: 900, Window: sec, Foreign: sec / 2}, // noisy
		{Round: 1, System: "pebble", Rate: 450, Handled: 450, Window: sec},
		{Round: 2, System: "pebble", Handled: 1200, Window: sec},
		{Round: 2, System: "pebble", Rate: 600, Err: "broke"},
		{Round: 3, System: "pebble", Handled: 1100, Window: sec},
		{Round: 4, System: "pebble", Handled: 1000, Window: sec},
		{Round: 1, System: "postgres", Err: "skipped: no PostgreSQL"},
	}
	rows := r.rows()
	if len(rows) != 3 {
		t.Fatalf("%d rows, want 3: %+v", len(rows), rows)
	}
	if p := rows[0]; p.Round != 3 || p.rounds != 4 || p.noisy != 1 || p.lo != 900 || p.hi != 1200 {
		t.Fatalf("peak row %+v: want round 3 (the median of the quiet 1000, 1100, 1200), 4 rounds, 1 noisy, 900-1200", p)
	}
	if p := rows[1]; p.Round != 1 || p.Err != "" || p.rounds != 2 {
		t.Fatalf("open-loop row %+v: want round 1, the one that ran", p)
	}
	if p := rows[2]; p.Err == "" {
		t.Fatalf("postgres row %+v: want its failure", p)
	}
	if _, ok := r.find("postgres", false); ok {
		t.Fatal("find returned a failed load")
	}
}
