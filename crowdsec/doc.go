// Package crowdsec shares sipsentry's decisions through a CrowdSec Local API
// (LAPI), both ways: the Publisher pushes local bans as alerts (logged in as
// a machine, batched, never blocking a local ban), the Consumer reads the
// decisions stream as a bouncer and hands bans of scope Ip or Range to a
// Sink after the never-ban rules.
//
// Everything a remote decision carries is untrusted: values are parsed into
// netip values, ranges wider than the configured limit are refused, and
// text is escaped before it is logged or passed on. Attacker-controlled
// fields of a local ban (accounts tried) are escaped before they are sent.
// The package never touches the kernel or the state database itself.
package crowdsec
