// Package dropwatch makes what the firewall drops visible and lets a new
// push server prove itself (issue 12). The firewall's ban and country rules
// copy what they drop to an NFLOG group (rate-limited in the kernel); the
// Watcher reads the copies (dropwatch/nflog), parses UDP SIP requests
// (dropwatch/sip), aggregates per source in a bounded table (it grows with
// use up to MaxSources, then evicts the least recently seen), counts them in
// sipsentry_dropped_packets_total{reason,country}, and flushes the
// aggregates to the state DB (state.SaveDropped). A dropped REGISTER that
// looks like a push server's is handed to the Probation.
//
// It must never let a packet's content decide more than the Probation's
// bounded chance (one probation per address per day, a few per hour),
// never grow memory past its bounds whatever the number of sources or
// distinct values seen, never block the NFLOG socket on the DB or on DNS,
// and never print a SIP value unescaped.
package dropwatch
