package ami

import "testing"

// The interning switch and its table must agree, or a key would be read
// back as another one.
func TestInternedKeysRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for i, k := range internedKeys {
		if i == 0 {
			continue
		}
		if seen[k] {
			t.Errorf("%q interned twice", k)
		}
		seen[k] = true
		if got := internKey([]byte(k)); int(got) != i {
			t.Errorf("internKey(%q) = %d, want %d", k, got, i)
		}
	}
	if len(internedKeys) > 255 {
		t.Fatal("more interned keys than a uint8 holds")
	}
	for _, k := range []string{"event", "RemoteAddress2", "", "X"} {
		if internKey([]byte(k)) != 0 {
			t.Errorf("internKey(%q) should not be interned", k)
		}
	}
}
