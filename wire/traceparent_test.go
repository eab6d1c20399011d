package wire_test

import (
	"testing"

	"github.com/terminator-gw/terminator/wire"
)

func TestParseTraceParent(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, c := range []struct {
		name, in string
		ok       bool
		flags    byte
	}{
		{"version 00", good, true, 1},
		{"not sampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true, 0},
		{"later version, longer", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next", true, 1},
		{"later version, exact", "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09", true, 9},
		{"version 00, longer", good + "-x", false, 0},
		{"later version, no dash after flags", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false, 0},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false, 0},
		{"uppercase hex", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false, 0},
		{"zero trace ID", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false, 0},
		{"zero parent ID", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false, 0},
		{"short", good[:54], false, 0},
		{"misplaced dash", "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", false, 0},
		{"not hex flags", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", false, 0},
		{"empty", "", false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			tid, sid, flags, ok := wire.ParseTraceParent([]byte(c.in))
			if ok != c.ok || flags != c.flags {
				t.Fatalf("ParseTraceParent(%q) = flags %d, ok %v; want %d, %v", c.in, flags, ok, c.flags, c.ok)
			}
			if !ok {
				return
			}
			// What was read writes back as the same version 00 value.
			if got, want := string(wire.AppendTraceParent(nil, tid, sid, flags)), "00"+c.in[2:55]; got != want {
				t.Errorf("AppendTraceParent = %q, want %q", got, want)
			}
		})
	}
}
