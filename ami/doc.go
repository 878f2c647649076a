// Package ami speaks the Asterisk Manager Interface: the wire codec
// (Reader, WriteMessage), typed security and contact events (events.go) and
// a reconnecting client (client.go). It is how sipsentry learns, within a
// millisecond, that a source failed to authenticate.
//
// Everything read here is hostile. Asterisk copies attacker-controlled SIP
// fields (From user, Call-ID, digest values) into its events unescaped, and
// a URL-decoded CR LF in a From user adds headers or splits a message (see
// the "s9 injection" recordings in shared/testdata/asterisk). So this
// package must never:
//
//   - take a source address from anything but the last RemoteAddress of a
//     security event (injected ones come first), nor fall back to an
//     earlier one when the last does not parse;
//   - interpret AccountID, SessionID, Challenge or Response as structure;
//   - let one bad message, an over-long line or a huge message stop the
//     stream or grow memory without bound;
//   - write a header whose key or value holds CR or LF.
//
// Evidence of injection (a repeated key, an Event block lacking what every
// genuine security event carries) is surfaced as SecurityEvent.Suspicion,
// never silently dropped or "repaired".
package ami
