package limit

import (
	"testing"
	"time"
)

func TestPerSecond(t *testing.T) {
	p := PerSecond{Max: 2}
	t0 := time.Unix(1000, 0)
	for i, tt := range []struct {
		at   time.Time
		want bool
	}{
		{t0, true},
		{t0.Add(100 * time.Millisecond), true},
		{t0.Add(900 * time.Millisecond), false}, // the third in the same second
		{t0.Add(time.Second), true},             // a new window
		{t0.Add(time.Second), true},
		{t0.Add(time.Second), false},
	} {
		if got := p.Allow(tt.at); got != tt.want {
			t.Errorf("event %d at %v: Allow = %v, want %v", i, tt.at.Sub(t0), got, tt.want)
		}
	}
	if p.Refused() != 2 {
		t.Errorf("Refused = %d, want 2", p.Refused())
	}
	if n := testing.AllocsPerRun(100, func() { p.Allow(t0) }); n != 0 {
		t.Errorf("Allow allocates %v times", n)
	}
}
