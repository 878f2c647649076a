package ami_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sipsentry/sipsentry/ami"
)

// FuzzReader feeds arbitrary bytes to the codec and the event parsers.
// Seeds: every recorded stream and transcript side (the first 8 KiB of the
// long ones) and each s9 request row, plus the committed corpus in
// testdata/fuzz/FuzzReader.
// Invariants: no panic; the reader ends; every key is non-empty without
// whitespace, CR or LF; no value holds LF; a message re-written with
// WriteMessage reads back identically; a parsed source is always the LAST
// RemoteAddress header, never an earlier one.
func FuzzReader(f *testing.F) {
	dir := filepath.Dir(codecData(f, "ami-security-session.raw"))
	files, _ := filepath.Glob(filepath.Join(dir, "*.raw"))
	// Big seeds make every mutation and every minimisation slow (the first
	// runs stalled for tens of seconds on the 56 KB session), so a stream
	// longer than 8 KiB contributes its head, cut at a message boundary;
	// whole streams are covered by the recorded-data tests.
	add := func(b []byte) {
		if len(b) > 8<<10 {
			if i := bytes.LastIndex(b[:8<<10], []byte("\r\n\r\n")); i > 0 {
				b = b[:i+4]
			}
		}
		f.Add(b)
	}
	for _, p := range files {
		raw := readCodecData(f, filepath.Base(p))
		if bytes.HasPrefix(raw, []byte("#### ")) {
			s2c, c2s := transcriptSides(f, raw)
			add(s2c)
			add(c2s)
			continue
		}
		add(raw)
	}
	s9 := readCodecData(f, "ami-s9-injection.raw")
	for _, row := range readS9Offsets(f) {
		if row.end > row.start {
			f.Add(s9[row.start:row.end])
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, o := range []ami.ReaderOptions{{}, {MaxLineBytes: 40, MaxMessageBytes: 200}} {
			checkStream(t, data, o)
			checkPathsAgree(t, data, o)
		}
	})
}

func checkStream(t *testing.T, data []byte, o ami.ReaderOptions) {
	r := ami.NewReader(bytes.NewReader(data), o)
	if bytes.HasPrefix(data, []byte("Asterisk")) {
		if v, err := r.ReadBanner(); err == nil && !strings.HasPrefix(v, "Asterisk Call Manager/") {
			t.Fatalf("banner %q accepted", v)
		}
	}
	n := uint64(0)
	for calls := 0; ; calls++ {
		if calls > len(data)+1 {
			t.Fatalf("reader does not end: %d calls on %d bytes", calls, len(data))
		}
		m, err := r.ReadMessage()
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		n++
		if len(m.Headers) == 0 {
			t.Fatal("empty message returned")
		}
		for _, h := range m.Headers {
			if h.Key == "" || strings.ContainsAny(h.Key, " \t\r\n") {
				t.Fatalf("bad key %q", h.Key)
			}
			if strings.Contains(h.Value, "\n") {
				t.Fatalf("value with LF: %q", h.Value)
			}
		}
		checkRoundTrip(t, m)
		checkEvents(t, &m)
	}
	if st := r.Stats(); st.Messages != n {
		t.Fatalf("Stats.Messages %d, returned %d", st.Messages, n)
	}
}

func checkRoundTrip(t *testing.T, m ami.Message) {
	var buf bytes.Buffer
	if err := ami.WriteMessage(&buf, m); err != nil {
		// Only keys with ':' or values with CR are refused, and the reader
		// can return those ("K:x: v", "K: a\rb").
		for _, h := range m.Headers {
			if strings.Contains(h.Key, ":") || strings.Contains(h.Value, "\r") {
				return
			}
		}
		t.Fatalf("WriteMessage refused a read message %q: %v", m.Headers, err)
	}
	back := ami.NewReader(&buf, ami.ReaderOptions{MaxLineBytes: 1 << 20, MaxMessageBytes: 1 << 22})
	m2, err := back.ReadMessage()
	if err != nil || len(m2.Headers) != len(m.Headers) {
		t.Fatalf("round trip of %q: %q %v", m.Headers, m2.Headers, err)
	}
	for i := range m.Headers {
		if m.Headers[i] != m2.Headers[i] {
			t.Fatalf("round trip header %d: %q -> %q", i, m.Headers[i], m2.Headers[i])
		}
	}
}

func checkEvents(t *testing.T, m *ami.Message) {
	ev, err := ami.ParseSecurityEvent(m)
	switch {
	case errors.Is(err, ami.ErrNotSecurityEvent):
		if ami.IsSecurityEvent(m) {
			t.Fatal("IsSecurityEvent true but ParseSecurityEvent says not one")
		}
	case err == nil || errors.Is(err, ami.ErrNoSource):
		if !ami.IsSecurityEvent(m) {
			t.Fatal("parsed a security event IsSecurityEvent rejects")
		}
		last, perr := ami.ParseAddress(m.Last("RemoteAddress"))
		if err == nil && (perr != nil || last != ev.Remote) {
			t.Fatalf("Remote %v is not the last RemoteAddress %q", ev.Remote, m.Last("RemoteAddress"))
		}
		if err != nil && ev.Remote.IsValid() {
			t.Fatal("ErrNoSource with a valid Remote")
		}
		if len(m.Values("RemoteAddress")) > 1 && ev.Suspicion == "" {
			t.Fatal("repeated RemoteAddress without Suspicion")
		}
	default:
		t.Fatalf("ParseSecurityEvent: %v", err)
	}
	if c, err := ami.ParseContact(m); err == nil {
		c.Via()
	}
	_, _ = ami.ParseContactStatus(m)
}

// checkPathsAgree reads data whole (messages parsed in place from the bufio
// buffer) and one byte per Read (line by line): both must return the same
// messages, error and counters.
func checkPathsAgree(t *testing.T, data []byte, o ami.ReaderOptions) {
	read := func(r io.Reader) ([]ami.Message, error, ami.ReaderStats) {
		rd := ami.NewReader(r, o)
		var out []ami.Message
		for range len(data) + 2 {
			m, err := rd.ReadMessage()
			if err != nil {
				return out, err, rd.Stats()
			}
			out = append(out, m)
		}
		t.Fatal("reader does not end")
		return nil, nil, ami.ReaderStats{}
	}
	a, errA, stA := read(bytes.NewReader(data))
	b, errB, stB := read(iotest.OneByteReader(bytes.NewReader(data)))
	if errA != errB || stA != stB || len(a) != len(b) {
		t.Fatalf("whole: %d msgs %v %+v; byte by byte: %d msgs %v %+v", len(a), errA, stA, len(b), errB, stB)
	}
	for i := range a {
		if len(a[i].Headers) != len(b[i].Headers) {
			t.Fatalf("message %d: %q vs %q", i, a[i].Headers, b[i].Headers)
		}
		for j := range a[i].Headers {
			if a[i].Headers[j] != b[i].Headers[j] {
				t.Fatalf("message %d header %d: %q vs %q", i, j, a[i].Headers[j], b[i].Headers[j])
			}
		}
	}
}
