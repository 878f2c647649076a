package ami_test

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/sipsentry/sipsentry/ami"
)

func TestReaderSplitsAtFirstColonSpace(t *testing.T) {
	in := "Asterisk Call Manager/11.0.0\r\n" +
		"Event: RequestNotAllowed\r\n" +
		"EventTV: 2026-11-25T13:13:01.134+0000\r\n" +
		"RemoteAddress: IPV6/UDP/::1/5077\r\n" +
		"RequestType: Action: Originate\r\n" +
		"Challenge: \r\n" +
		"Path:\r\n" +
		"X-Odd:value: with colon\r\n" +
		"\r\n"
	r := ami.NewReader(strings.NewReader(in), ami.ReaderOptions{})
	if v, err := r.ReadBanner(); err != nil || v != "Asterisk Call Manager/11.0.0" {
		t.Fatalf("banner %q %v", v, err)
	}
	m, err := r.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	want := []ami.Header{
		{"Event", "RequestNotAllowed"},
		{"EventTV", "2026-11-25T13:13:01.134+0000"},
		{"RemoteAddress", "IPV6/UDP/::1/5077"},
		{"RequestType", "Action: Originate"},
		{"Challenge", ""},
		{"Path", ""},
		{"X-Odd:value", "with colon"},
	}
	if len(m.Headers) != len(want) {
		t.Fatalf("got %d headers %q, want %d", len(m.Headers), m.Headers, len(want))
	}
	for i := range want {
		if m.Headers[i] != want[i] {
			t.Errorf("header %d = %q, want %q", i, m.Headers[i], want[i])
		}
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("want io.EOF at a clean end, got %v", err)
	}
}

func TestReaderKeepsRepeatedKeysAndFoldsCase(t *testing.T) {
	in := "Event: InvalidAccountID\nAccountID: x\nRemoteAddress: IPV4/UDP/6.6.6.6/1\n" +
		"SessionID: 1-4323@127.0.0.13\nremoteaddress: IPV4/UDP/127.0.0.13/5099\n\n"
	msgs, st := readAll(t, []byte(in), false)
	if len(msgs) != 1 || st.Messages != 1 {
		t.Fatalf("got %d messages, stats %+v", len(msgs), st)
	}
	m := &msgs[0]
	if got := m.Values("RemoteAddress"); len(got) != 2 || got[0] != "IPV4/UDP/6.6.6.6/1" || got[1] != "IPV4/UDP/127.0.0.13/5099" {
		t.Fatalf("Values(RemoteAddress) = %q", got)
	}
	if m.Last("REMOTEADDRESS") != "IPV4/UDP/127.0.0.13/5099" || m.Get("remoteAddress") != "IPV4/UDP/6.6.6.6/1" {
		t.Fatalf("case-insensitive Get/Last wrong: %q %q", m.Get("remoteAddress"), m.Last("REMOTEADDRESS"))
	}
	if !m.Has("sessionid") || m.Has("LocalAddress") {
		t.Fatal("Has wrong")
	}
}

func TestReaderMixedLineEndsAndBlankRuns(t *testing.T) {
	in := "\r\n\nResponse: Success\r\nActionID: 1\n\r\n\r\n\nResponse: Pong\nActionID: 2\r\n\r\n"
	msgs, st := readAll(t, []byte(in), false)
	if len(msgs) != 2 || msgs[0].Get("ActionID") != "1" || msgs[1].Get("Response") != "Pong" || st.Malformed != 0 {
		t.Fatalf("got %q stats %+v", msgs, st)
	}
}

func TestReaderBannerRefusesOtherProtocols(t *testing.T) {
	r := ami.NewReader(strings.NewReader("SSH-2.0-OpenSSH_9.6\r\n"), ami.ReaderOptions{})
	_, err := r.ReadBanner()
	if !errors.Is(err, ami.ErrBanner) {
		t.Fatalf("want ErrBanner, got %v", err)
	}
	if !strings.Contains(err.Error(), "SSH-2.0") {
		t.Fatalf("error should quote what was received: %v", err)
	}
}

func TestWriteMessageRoundTrip(t *testing.T) {
	m := ami.Message{Headers: []ami.Header{
		{"Action", "Login"}, {"Username", "sentry"}, {"Secret", "s: e:cret"}, {"Events", "security,system"}, {"Empty", ""},
	}}
	var buf bytes.Buffer
	if err := ami.WriteMessage(&buf, m); err != nil {
		t.Fatal(err)
	}
	want := "Action: Login\r\nUsername: sentry\r\nSecret: s: e:cret\r\nEvents: security,system\r\nEmpty: \r\n\r\n"
	if buf.String() != want {
		t.Fatalf("wrote %q, want %q", buf.String(), want)
	}
	msgs, _ := readAll(t, buf.Bytes(), false)
	if len(msgs) != 1 || len(msgs[0].Headers) != len(m.Headers) {
		t.Fatalf("round trip gave %q", msgs)
	}
	for i := range m.Headers {
		if msgs[0].Headers[i] != m.Headers[i] {
			t.Errorf("header %d: %q != %q", i, msgs[0].Headers[i], m.Headers[i])
		}
	}
}

func TestWriteMessageRefusesInjection(t *testing.T) {
	for _, h := range []ami.Header{
		{"ActionID", "1\r\nAction: Originate"},
		{"ActionID", "1\nX: y"},
		{"Action\r\nX", "y"},
		{"", "y"},
		{"Bad Key", "y"},
		{"Key:", "y"},
	} {
		var buf bytes.Buffer
		err := ami.WriteMessage(&buf, ami.Message{Headers: []ami.Header{{"Action", "Ping"}, h}})
		if err == nil {
			t.Errorf("WriteMessage accepted %q", h)
		}
		if buf.Len() != 0 {
			t.Errorf("WriteMessage wrote %q for a refused message", buf.String())
		}
	}
}
