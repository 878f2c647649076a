package sip_test

import (
	"errors"
	"testing"

	"github.com/sipsentry/sipsentry/dropwatch/sip"
)

// FuzzParse feeds arbitrary bytes to the parser. Seeds: every transport
// payload of the recorded pcaps (sip-scenarios, sip-s9-injection,
// sip-netns, forged/sip-forged), each also cut at 512 bytes as NFLOG
// copies it, plus the committed corpus in testdata/fuzz/FuzzParse.
// Invariants: no panic; an error gives a zero Request; every value is
// within its cap; a method is a token; Printable output is printable ASCII.
func FuzzParse(f *testing.F) {
	for _, b := range payloads(f) {
		f.Add(b)
		if len(b) > 512 {
			f.Add(b[:512])
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := sip.Parse(b)
		if err != nil {
			if !errors.Is(err, sip.ErrNotRequest) && !errors.Is(err, sip.ErrResponse) {
				t.Fatalf("unexpected error %v", err)
			}
			if r != (sip.Request{}) {
				t.Fatalf("error %v with a non-zero request %+v", err, r)
			}
			return
		}
		if r.Method == "" || len(r.Method) > sip.MaxMethod {
			t.Fatalf("method %q", r.Method)
		}
		for _, v := range []string{r.RURIUser, r.FromUser, r.ToUser} {
			if len(v) > sip.MaxUser {
				t.Fatalf("user of %d bytes", len(v))
			}
		}
		if len(r.UserAgent) > sip.MaxUserAgent {
			t.Fatalf("user agent of %d bytes", len(r.UserAgent))
		}
		for _, v := range []string{r.Method, r.RURIUser, r.FromUser, r.ToUser, r.UserAgent} {
			for _, c := range []byte(sip.Printable(v)) {
				if c < 0x20 || c > 0x7e {
					t.Fatalf("Printable(%q) holds byte %#x", v, c)
				}
			}
		}
	})
}
