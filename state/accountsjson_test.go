package state

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"

	"github.com/sipsentry/sipsentry/activity"
)

// jsonTricky are account names that exercise every escape json.Marshal
// makes, and the edges around them.
var jsonTricky = []string{
	"", "1001", "plain ascii ~ DEL\x7f", `"`, `\`, `\"`, `"quoted"`, `back\slash`, "it's",
	"\x00\x01\x02\x03\x04\x05\x06\x07\b\t\n\x0b\f\r\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f",
	"<script>alert(1)</script>", "a&b", "<>&", "\u2028", "\u2029", "x\u2028y\u2029z", "\u2027\u202a",
	"\xff", "\xfe\xff", "\xc3", "\xc3\x28", "\xe2\x80", "\xe2\x80\xa8\xe2", "\xf0\x9f\x98", "\xf0\x9f\x98\x80", "\xed\xa0\x80",
	"\xc0\x80", "日本語", "emoji 😀", "\ufffd", "mixed \x00<\xff>\u2028\"\\\n end",
}

func marshalAccounts(t testing.TB, accs []activity.AccountCount) []byte {
	want, err := json.Marshal(nonNil(accs))
	if err != nil {
		t.Fatal(err)
	}
	return want
}

// The accounts column is byte for byte what json.Marshal wrote before.
func TestAccountsJSONMatchesMarshal(t *testing.T) {
	cases := [][]activity.AccountCount{nil, {}}
	for i, s := range jsonTricky {
		cases = append(cases, []activity.AccountCount{{Account: s, Count: i}})
	}
	var all []activity.AccountCount
	for i, s := range jsonTricky {
		all = append(all, activity.AccountCount{Account: s, Count: i * 1000})
	}
	cases = append(cases, all,
		[]activity.AccountCount{{Account: "n", Count: -1}, {Account: "max", Count: math.MaxInt}, {Account: "min", Count: math.MinInt}})
	for _, accs := range cases {
		want := marshalAccounts(t, accs)
		if got := appendAccountsJSON(nil, accs); !bytes.Equal(got, want) {
			t.Errorf("accounts %#v:\n got %s\nwant %s", accs, got, want)
		}
	}
	// Appending keeps what the buffer held.
	if got := appendAccountsJSON([]byte("prefix"), nil); string(got) != "prefix[]" {
		t.Errorf("append to a buffer: %q", got)
	}
}

func FuzzAccountsJSON(f *testing.F) {
	for i, s := range jsonTricky {
		f.Add(s, s+"2", i)
	}
	f.Fuzz(func(t *testing.T, a, b string, n int) {
		accs := []activity.AccountCount{{Account: a, Count: n}, {Account: b, Count: -n}}
		if got, want := appendAccountsJSON(nil, accs), marshalAccounts(t, accs); !bytes.Equal(got, want) {
			t.Fatalf("accounts %#v:\n got %s\nwant %s", accs, got, want)
		}
	})
}

// BenchmarkAccountsJSON: the accounts column of a scanner's row, by
// json.Marshal and by appendAccountsJSON.
func BenchmarkAccountsJSON(b *testing.B) {
	accs := []activity.AccountCount{{Account: "100", Count: 2}, {Account: "admin", Count: 1}, {Account: "1001", Count: 7}}
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := json.Marshal(nonNil(accs)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for range b.N {
			buf = appendAccountsJSON(buf[:0], accs)
			_ = string(buf)
		}
	})
}

// nonNil is what the writer marshalled before appendAccountsJSON: no
// accounts as [], not null.
func nonNil(a []activity.AccountCount) []activity.AccountCount {
	if a == nil {
		return []activity.AccountCount{}
	}
	return a
}
