package seclog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"reflect"
	"testing"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

func readEvents(t *testing.T, data []byte, copyRecords bool) []ami.SecurityEvent {
	t.Helper()
	r := NewReader(bytes.NewReader(data))
	r.copyRecords = copyRecords
	var out []ami.SecurityEvent
	for {
		ev, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

// Events read through the in-place parse are kept whole after the reader
// has reused its buffers many times: they equal the events of the copying
// path, value for value, for the recorded logs (including the injection
// recording with records split over several lines) and the fuzz corpus.
func TestReaderEventsOutliveBuffers(t *testing.T) {
	var inputs [][]byte
	for _, name := range []string{"security.log", "security-s9-injection.log"} {
		b, err := os.ReadFile(testpath.Shared(t, "asterisk", name))
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, b)
	}
	corpus, _ := os.ReadDir("testdata/fuzz/FuzzReader")
	for _, e := range corpus {
		if b, err := os.ReadFile("testdata/fuzz/FuzzReader/" + e.Name()); err == nil {
			inputs = append(inputs, b)
		}
	}
	for i, data := range inputs {
		got := readEvents(t, data, false)
		want := readEvents(t, data, true)
		if len(got) != len(want) {
			t.Fatalf("input %d: %d events in place, %d copied", i, len(got), len(want))
		}
		for j := range got {
			if !reflect.DeepEqual(normalise(got[j]), normalise(want[j])) {
				t.Fatalf("input %d event %d differs:\n in place %+v\n copied   %+v", i, j, got[j], want[j])
			}
		}
	}
}

// normalise treats a nil and an empty field list alike.
func normalise(ev ami.SecurityEvent) ami.SecurityEvent {
	if len(ev.Fields) == 0 {
		ev.Fields = nil
	}
	return ev
}
