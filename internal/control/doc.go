// Package control is the daemon's control socket: a unix socket on which
// `sipsentry ban`, `unban`, `allow`, `disallow`, `bans` and `allows` ask the
// running daemon to act, so that its engine decides, records and applies
// every manual change exactly as it does its own.
//
// The protocol is one JSON object per line: the client writes one Request,
// the server answers with one Response, or, for a listing, one Response per
// record followed by a last one with More unset. Every line is capped
// (MaxRequestBytes, MaxResponseLineBytes) and every connection has
// deadlines, so a slow or hostile peer costs a bounded amount.
//
// Who may act is decided from the kernel's view of the peer (SO_PEERCRED and
// SO_PEERGROUPS), never from anything the request says: root, or a member of
// the configured group. Everything in a request is hostile until parsed.
//
// It must never import the engine or the daemon: the daemon hands it a
// Handler, and the package knows nothing of how decisions are made.
package control
