package ami_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/internal/testpath"
)

// codecData returns the path of a file in the shared Asterisk recordings:
// ../shared/testdata/asterisk beside the directory holding go.mod, so the
// tests run wherever CI clones the repository.
func codecData(t testing.TB, name string) string {
	t.Helper()
	p := testpath.Shared(t, "asterisk", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("recorded Asterisk data missing (expected ../shared/testdata beside the repo): %v", err)
	}
	return p
}

func readCodecData(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(codecData(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// transcriptSides splits a transcript file into the server->client and
// client->server bytes, dropping the "#### S->C label" marker lines.
func transcriptSides(t testing.TB, raw []byte) (s2c, c2s []byte) {
	t.Helper()
	var cur *[]byte
	for len(raw) > 0 {
		i := bytes.IndexByte(raw, '\n')
		var line []byte
		if i < 0 {
			line, raw = raw, nil
		} else {
			line, raw = raw[:i+1], raw[i+1:]
		}
		switch {
		case bytes.HasPrefix(line, []byte("#### S->C ")):
			cur = &s2c
			continue
		case bytes.HasPrefix(line, []byte("#### C->S ")):
			cur = &c2s
			continue
		}
		if cur == nil {
			t.Fatalf("transcript does not start with a #### marker: %q", line)
		}
		*cur = append(*cur, line...)
	}
	return s2c, c2s
}

// readAll reads a banner (if banner) and then every message until io.EOF.
func readAll(t testing.TB, data []byte, banner bool) ([]ami.Message, ami.ReaderStats) {
	t.Helper()
	r := ami.NewReader(bytes.NewReader(data), ami.ReaderOptions{})
	if banner {
		v, err := r.ReadBanner()
		if err != nil {
			t.Fatalf("banner: %v", err)
		}
		if v != "Asterisk Call Manager/11.0.0" {
			t.Fatalf("banner = %q", v)
		}
	}
	var out []ami.Message
	for {
		m, err := r.ReadMessage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("message %d: %v", len(out)+1, err)
		}
		out = append(out, m)
	}
	return out, r.Stats()
}
