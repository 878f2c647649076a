package ami_test

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/sipsentry/sipsentry/ami"
)

func TestReaderSkipsGarbageAndGoesOn(t *testing.T) {
	in := "Asterisk Call Manager/11.0.0\r\n" +
		"Response: Success\r\nActionID: 1\r\n\r\n" +
		"this is not a header\r\n\x00\x01\x02 binary junk\r\n\r\n" + // garbage block
		"Event: A\r\nnot a header either\r\nKey: v\r\n\r\n" + // one bad line spoils its message
		" RemoteAddress: IPV4/UDP/6.6.6.6/1\r\n\r\n" + // folded-looking line: not a header
		": no key\r\n\r\n" +
		"Event: FullyBooted\r\nPrivilege: system,all\r\n\r\n"
	r := ami.NewReader(strings.NewReader(in), ami.ReaderOptions{})
	if _, err := r.ReadBanner(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Get("ActionID")+m.Get("Event"))
	}
	if strings.Join(got, ",") != "1,FullyBooted" {
		t.Fatalf("got %q", got)
	}
	if st := r.Stats(); st.Messages != 2 || st.Malformed != 4 || st.Oversized != 0 {
		t.Fatalf("stats %+v, want 2 messages, 4 malformed", st)
	}
}

// endless yields n bytes of 'A' without holding them, then rest.
type endless struct {
	n    int
	rest *strings.Reader
}

func (e *endless) Read(p []byte) (int, error) {
	if e.n > 0 {
		k := min(len(p), e.n)
		for i := range k {
			p[i] = 'A'
		}
		e.n -= k
		return k, nil
	}
	return e.rest.Read(p)
}

func TestReaderOverlongLineHasBoundedMemory(t *testing.T) {
	const lineBytes = 10 << 20
	src := io.MultiReader(
		strings.NewReader("Event: Before\r\n\r\nEvent: Big\r\nAccountID: "),
		&endless{n: lineBytes, rest: strings.NewReader("\r\nRemoteAddress: IPV4/UDP/6.6.6.6/1\r\n\r\nEvent: After\r\nKey: v\r\n\r\n")},
	)
	r := ami.NewReader(src, ami.ReaderOptions{})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var got []string
	for {
		m, err := r.ReadMessage()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.Get("Event"))
	}
	runtime.ReadMemStats(&after)
	if strings.Join(got, ",") != "Before,After" {
		t.Fatalf("got %q, want the messages around the over-long one", got)
	}
	if st := r.Stats(); st.Oversized != 1 || st.Messages != 2 || st.Malformed != 0 {
		t.Fatalf("stats %+v", st)
	}
	// A reader that kept the line would allocate >= 10 MiB; the bound is
	// the 8 KiB line buffer plus small change.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2<<20 {
		t.Fatalf("reading a %d-byte line allocated %d bytes", lineBytes, alloc)
	}
}

func TestReaderOversizedMessage(t *testing.T) {
	var b strings.Builder
	b.WriteString("Event: Huge\r\n")
	for i := 0; b.Len() < 5000; i++ {
		b.WriteString("Key: 0123456789012345678901234567890123456789\r\n")
	}
	b.WriteString("\r\nEvent: Next\r\n\r\n")
	r := ami.NewReader(strings.NewReader(b.String()), ami.ReaderOptions{MaxLineBytes: 100, MaxMessageBytes: 1000})
	m, err := r.ReadMessage()
	if err != nil || m.Get("Event") != "Next" {
		t.Fatalf("got %q %v", m.Headers, err)
	}
	if st := r.Stats(); st.Oversized != 1 || st.Messages != 1 {
		t.Fatalf("stats %+v", st)
	}
	// A line exactly at the cap is fine; one byte more is not.
	ok := "K: " + strings.Repeat("v", 97)
	r = ami.NewReader(strings.NewReader(ok+"\r\n\r\n"+ok+"v\n\n"), ami.ReaderOptions{MaxLineBytes: 100})
	if m, err := r.ReadMessage(); err != nil || len(m.Get("K")) != 97 {
		t.Fatalf("line at the cap: %v", err)
	}
	if _, err := r.ReadMessage(); err != io.EOF || r.Stats().Oversized != 1 {
		t.Fatalf("line over the cap: %v %+v", err, r.Stats())
	}
}

func TestReaderHalfMessageAtEOF(t *testing.T) {
	for _, tail := range []string{"Event: Cut\r\nRemoteAddr", "Event: Cut\r\n", "Event: Cut\r\nKey: v\r\n\r"} {
		r := ami.NewReader(strings.NewReader("Event: Whole\r\n\r\n"+tail), ami.ReaderOptions{})
		if m, err := r.ReadMessage(); err != nil || m.Get("Event") != "Whole" {
			t.Fatalf("%q: first message %v", tail, err)
		}
		_, err := r.ReadMessage()
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%q: want io.ErrUnexpectedEOF for a cut message, got %v", tail, err)
		}
		if _, err2 := r.ReadMessage(); !errors.Is(err2, io.ErrUnexpectedEOF) {
			t.Fatalf("%q: error not sticky: %v", tail, err2)
		}
	}
	// Blank lines before EOF are a clean end.
	r := ami.NewReader(strings.NewReader("Event: Whole\r\n\r\n\r\n\n"), ami.ReaderOptions{})
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("want io.EOF, got %v", err)
	}
}

func TestReaderReadErrorIsReturned(t *testing.T) {
	boom := errors.New("connection reset")
	r := ami.NewReader(io.MultiReader(strings.NewReader("Event: A\r\n\r\nEvent: B\r\n"), iotest.ErrReader(boom)), ami.ReaderOptions{})
	if _, err := r.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadMessage(); !errors.Is(err, boom) {
		t.Fatalf("want the read error, got %v", err)
	}
}

// The recorded session read one byte per Read call gives the same messages.
func TestReaderOneByteReads(t *testing.T) {
	data := readCodecData(t, "ami-security-session.raw")
	whole, _ := readAll(t, data, true)
	r := ami.NewReader(iotest.OneByteReader(bytes.NewReader(data)), ami.ReaderOptions{})
	if _, err := r.ReadBanner(); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		m, err := r.ReadMessage()
		if err == io.EOF {
			if i != len(whole) {
				t.Fatalf("%d messages one byte at a time, %d at once", i, len(whole))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Headers) != len(whole[i].Headers) {
			t.Fatalf("message %d differs", i)
		}
		for j := range m.Headers {
			if m.Headers[j] != whole[i].Headers[j] {
				t.Fatalf("message %d header %d: %q vs %q", i, j, m.Headers[j], whole[i].Headers[j])
			}
		}
	}
}

// Returned messages do not alias the reader's buffers: reading on must not
// change a message already returned.
func TestReaderMessagesDoNotAlias(t *testing.T) {
	r := ami.NewReader(strings.NewReader("Unusual-Key: first\r\n\r\nUnusual-Key: second\r\n\r\n"), ami.ReaderOptions{})
	a, _ := r.ReadMessage()
	b, _ := r.ReadMessage()
	if a.Headers[0] != (ami.Header{Key: "Unusual-Key", Value: "first"}) || b.Get("unusual-key") != "second" {
		t.Fatalf("a=%q b=%q", a.Headers, b.Headers)
	}
}

// errOnce fails its first Read, then serves data.
type errOnce struct {
	err  error
	rest io.Reader
}

func (e *errOnce) Read(p []byte) (int, error) {
	if e.err != nil {
		err := e.err
		e.err = nil
		return 0, err
	}
	return e.rest.Read(p)
}

// A read error between messages is returned, not swallowed by a retry.
func TestReaderErrorBetweenMessagesNotLost(t *testing.T) {
	boom := errors.New("i/o timeout")
	r := ami.NewReader(&errOnce{err: boom, rest: strings.NewReader("Event: A\r\n\r\n")}, ami.ReaderOptions{})
	if _, err := r.ReadMessage(); !errors.Is(err, boom) {
		t.Fatalf("want the read error, got %v", err)
	}
}
