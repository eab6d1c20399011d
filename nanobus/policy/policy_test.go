package policy

import "testing"

func TestLabels(t *testing.T) {
	labels := []byte("+new-inbox,page=b,+beta")
	for _, tt := range []struct {
		name string
		on   bool
	}{{"new-inbox", true}, {"beta", true}, {"new", false}, {"page", false}, {"b", false}} {
		if got := FlagOn(labels, tt.name); got != tt.on {
			t.Errorf("FlagOn(%q) = %v, want %v", tt.name, got, tt.on)
		}
	}
	if v, ok := VariantOf(labels, "page"); !ok || v != "b" {
		t.Errorf("VariantOf(page) = %q, %v; want b, true", v, ok)
	}
	if v, ok := VariantOf(labels, "pag"); ok {
		t.Errorf("VariantOf(pag) = %q, true; want none", v)
	}
	if FlagOn(nil, "beta") {
		t.Error("FlagOn on no labels")
	}
}

func TestCheckAndPick(t *testing.T) {
	e := &Experiment{Name: "page", By: "cookie:tid", Variants: []Variant{{"a", "v1", 50}, {"b", "v2", 50}}}
	p := &Policy{Weights: map[string]int{"v1": 80, "v2": 20}, AB: e}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []*Policy{
		{Weights: map[string]int{"": 1}},
		{Ghost: &Ghost{Version: "v2", Percent: 101}},
		{AB: &Experiment{Name: "x", By: "query:q", Variants: e.Variants}},
		{AB: &Experiment{Name: "x", By: "cookie:tid"}},
	} {
		if bad.Check() == nil {
			t.Errorf("Check(%+v) = nil, want an error", bad)
		}
	}
	// Sticky: a key lands in the same variant every time, and the split
	// is near its shares.
	counts := map[string]int{}
	for i := range 10000 {
		key := string(rune('a'+i%26)) + string(rune(i))
		v := e.Pick(key)
		if e.Pick(key) != v {
			t.Fatalf("key %q moved between variants", key)
		}
		counts[v.Name]++
	}
	if counts["a"] < 4000 || counts["b"] < 4000 {
		t.Errorf("split %v, want near 50/50", counts)
	}
	c := p.Clone()
	c.Weights["v1"], c.AB.Variants[0].Name = 1, "z"
	if p.Weights["v1"] != 80 || p.AB.Variants[0].Name != "a" {
		t.Error("Clone shares with the original")
	}
}

func TestFlag(t *testing.T) {
	if (&Flag{Name: "f", Percent: 50}).Check() == nil {
		t.Error("a percentage without a key passes Check")
	}
	on, off := &Flag{Name: "f", Percent: 100}, &Flag{Name: "f"}
	if !on.On("k") || off.On("k") {
		t.Error("100% is not on, or 0% not off")
	}
	half := &Flag{Name: "f", Percent: 50, By: "header:X-User"}
	if err := half.Check(); err != nil {
		t.Fatal(err)
	}
	if half.On("k") != (Slot("f", "k") < 50) {
		t.Error("On disagrees with Slot")
	}
}
