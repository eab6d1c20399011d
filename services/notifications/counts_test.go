package notifications_test

import (
	"encoding/json"
	"testing"

	"github.com/terminator-gw/terminator/services/notifications"
)

func TestParseCounts(t *testing.T) {
	tests := []struct {
		in      string
		want    notifications.Counts
		wantErr bool
	}{
		{`{"visits":0,"flirts":0}`, notifications.Counts{}, false},
		{`{"visits":12,"flirts":3}`, notifications.Counts{Visits: 12, Flirts: 3}, false},
		{`{"flirts":3,"visits":12}`, notifications.Counts{Visits: 12, Flirts: 3}, false}, // another writer's order
		{`{ "visits": 1, "flirts": 2 }`, notifications.Counts{Visits: 1, Flirts: 2}, false},
		{`{"visits":1}`, notifications.Counts{Visits: 1}, false},
		{`{"visits":x,"flirts":1}`, notifications.Counts{}, true},
		{``, notifications.Counts{}, true},
		{`{"visits":1,"flirts":2`, notifications.Counts{}, true},
	}
	for _, tt := range tests {
		got, err := notifications.ParseCounts([]byte(tt.in))
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("ParseCounts(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// The counts arrive over the bus: whatever the bytes, an answer or an
// error, never a panic, and the fast path agrees with encoding/json.
func FuzzParseCounts(f *testing.F) {
	f.Add([]byte(`{"visits":12,"flirts":3}`))
	f.Add([]byte(`{"visits":-1,"flirts":99999999999999999999}`))
	f.Add([]byte(`{"visits":+1,"flirts":01}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := notifications.ParseCounts(b)
		if err != nil {
			return
		}
		var j notifications.Counts
		if jerr := json.Unmarshal(b, &j); jerr != nil || j != c {
			t.Fatalf("%q: parsed %+v, encoding/json says %+v (%v)", b, c, j, jerr)
		}
	})
}

func BenchmarkParseCounts(b *testing.B) {
	in := []byte(`{"visits":1234,"flirts":56}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := notifications.ParseCounts(in); err != nil {
			b.Fatal(err)
		}
	}
}
