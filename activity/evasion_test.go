package activity

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

var update = flag.Bool("update", false, "rewrite activity/testdata fixtures from ../shared/testdata")

// ReusedCallIDFixture is the fixture's path from the repository root.
const reusedCallIDFixture = "activity/testdata/reused-callid-scan.raw"

// reusedCallIDScan builds the reused-Call-ID scan from the recorded s1 scan
// (ami-s1-scanner-register.raw: 50 REGISTERs for unknown users 100..149,
// each an InvalidAccountID + ChallengeSent(<unknown>) pair): 200 requests for
// accounts 100..299, every one with the first request's Call-ID
// (1-26047@127.0.0.11), 100 ms apart as recorded, the ChallengeSent 1 ms
// after its InvalidAccountID. Everything else is the recorded bytes.
func reusedCallIDScan(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testpath.Shared(t, "asterisk"), "ami-s1-scanner-register.raw"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(strings.TrimSuffix(string(raw), "\r\n\r\n"), "\r\n\r\n")
	if len(blocks) != 100 {
		t.Fatalf("s1 recording: %d messages, want 100 (50 pairs)", len(blocks))
	}
	const callID = "1-26047@127.0.0.11"
	start := time.Date(2026, 11, 25, 13, 12, 7, 974e6, time.UTC)
	var out bytes.Buffer
	for i := range 200 {
		for half, block := range blocks[2*(i%50) : 2*(i%50)+2] {
			at := start.Add(time.Duration(i)*100*time.Millisecond + time.Duration(half)*time.Millisecond)
			lines := strings.Split(block, "\r\n")
			for j, l := range lines {
				switch {
				case strings.HasPrefix(l, "EventTV: "):
					lines[j] = "EventTV: " + at.Format("2006-01-02T15:04:05.000-0700")
				case strings.HasPrefix(l, "SessionID: "):
					lines[j] = "SessionID: " + callID
				case half == 0 && strings.HasPrefix(l, "AccountID: "):
					lines[j] = fmt.Sprintf("AccountID: %d", 100+i)
				}
			}
			out.WriteString(strings.Join(lines, "\r\n"))
			out.WriteString("\r\n\r\n")
		}
	}
	return out.Bytes()
}

// The committed fixture is what the recording gives (go test ./activity
// -run Fixture -update rewrites it).
func TestReusedCallIDFixture(t *testing.T) {
	want := reusedCallIDScan(t)
	path := filepath.Join(testpath.RepoRoot(t), reusedCallIDFixture)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what ami-s1-scanner-register.raw gives; rerun with -update", reusedCallIDFixture)
	}
}

func readEvents(t testing.TB, path string) []ami.SecurityEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := ami.NewReader(bufio.NewReader(f), ami.ReaderOptions{})
	var out []ami.SecurityEvent
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		ev, err := ami.ParseSecurityEvent(&m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
}

// A scanner reusing one Call-ID for 200 accounts made 200 attempts: the
// pair is recognised by its shape, not by the SessionID.
func TestReusedCallIDCountsEveryAttempt(t *testing.T) {
	evs := readEvents(t, filepath.Join(testpath.RepoRoot(t), reusedCallIDFixture))
	if len(evs) != 400 {
		t.Fatalf("%d events, want 400", len(evs))
	}
	var s Source
	counted := 0
	for i := range evs {
		if _, c := s.Observe(&evs[i], evs[i].Time); c {
			counted++
		}
	}
	if counted != 200 || s.Counts.UnknownAccount != 200 || s.DistinctAccounts != 200 {
		t.Fatalf("counted %d, counts %+v, distinct %d; want 200 attempts, 200 accounts", counted, s.Counts, s.DistinctAccounts)
	}
}

// Concurrent requests of one source interleave their halves; each request
// still counts once.
func TestInterleavedPairsCountOnce(t *testing.T) {
	var s Source
	at := time.Date(2026, 11, 25, 13, 12, 7, 0, time.UTC)
	seq := []*ami.SecurityEvent{
		event(ami.EventInvalidAccountID, "100", "same"), event(ami.EventInvalidAccountID, "101", "same"),
		event(ami.EventChallengeSent, ami.UnknownAccount, "same"), event(ami.EventChallengeSent, ami.UnknownAccount, "same"),
	}
	for _, ev := range seq {
		s.Observe(ev, at)
	}
	if s.Counts.UnknownAccount != 2 {
		t.Fatalf("counts %+v, want 2 attempts", s.Counts)
	}
	// A ChallengeSent(<unknown>) long after the last InvalidAccountID is an
	// attempt of its own (e.g. after an ACL failure).
	s.Observe(event(ami.EventInvalidAccountID, "102", "x"), at)
	s.Observe(event(ami.EventChallengeSent, ami.UnknownAccount, "x"), at.Add(5*time.Second))
	if s.Counts.UnknownAccount != 4 {
		t.Fatalf("counts %+v, want 4 attempts", s.Counts)
	}
}
