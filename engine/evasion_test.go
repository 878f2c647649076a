package engine

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// loadFixture parses a raw AMI stream of the repository's own fixtures
// (built from the shared recordings), sources rewritten through m.
func loadFixture(t testing.TB, rel string, m map[string]string) []ami.SecurityEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(testpath.RepoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := ami.NewReader(bufio.NewReader(f), ami.ReaderOptions{})
	var out []ami.SecurityEvent
	for {
		msg, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		ev, err := ami.ParseSecurityEvent(&msg)
		if err != nil {
			t.Fatal(err)
		}
		ev.Remote.AddrPort = netip.AddrPortFrom(rewrite(m, ev.Remote.Addr()), ev.Remote.AddrPort.Port())
		out = append(out, ev)
	}
}

// A scanner reusing one Call-ID for 200 accounts (400 events; fixture built
// from the recorded s1 scan by activity's TestReusedCallIDFixture) is banned
// at the threshold, as the same scan with distinct Call-IDs is (TestScannerS1):
// user enumeration at the 3rd account, the 5th event.
func TestReusedCallIDScanBanned(t *testing.T) {
	r := newRig(t, rigOpt{})
	evs := loadFixture(t, "activity/testdata/reused-callid-scan.raw", recordedMap)
	if len(evs) != 400 {
		t.Fatalf("%d events, want 400", len(evs))
	}
	banAt := 0
	for i, ev := range evs {
		r.eng.Handle(context.Background(), ev)
		if banAt == 0 && r.banned("203.0.113.11") {
			banAt = i + 1
		}
	}
	if banAt != 5 {
		t.Fatalf("banned after %d events, want 5 (the 3rd account's InvalidAccountID)", banAt)
	}
	if d := r.eng.Snapshot().Recent; len(d) == 0 || !strings.Contains(d[0].Reason, "user enumeration: 3 accounts") {
		t.Errorf("decisions %+v", d)
	}
}
