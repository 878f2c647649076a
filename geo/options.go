package geo

import "time"

// Options is everything geo needs from the configuration, as plain values:
// the daemon and the commands translate their settings into it once (see
// internal/geoconf), so geo never reads a config file. The
// setting names in geo's messages ("geo.min_entries") are the config keys
// an admin edits; they are only text here.
type Options struct {
	// AllowCountries are ISO 3166-1 alpha-2 codes (any case); Open
	// upper-cases, sorts and de-duplicates them.
	AllowCountries []string
	// MMDB and ASNMMDB are MaxMind DB paths; empty means none.
	MMDB, ASNMMDB string
	// ListURLv4 and ListURLv6 are download templates whose {cc} becomes the
	// lower-case country code. Unused when ListsDir is set.
	ListURLv4, ListURLv6 string
	// ListsDir replaces downloads with local <cc>-ipv4.txt / <cc>-ipv6.txt
	// files.
	ListsDir string
	// StateDir holds the last good lists (<StateDir>/lists) and the private
	// copies of the databases. Empty: nothing is kept (one-shot lookups).
	StateDir string
	// Refresh is how often Run re-fetches (or re-reads) the lists; 0: never.
	Refresh time.Duration
	// MinEntries is the floor: a list with fewer CIDR lines (as written, each
	// line counts, before any merging) is refused. 0: no floor.
	MinEntries int
	// MaxShrink refuses a list that covers fewer addresses than
	// (1 - MaxShrink) × the last good list's. 0: off.
	MaxShrink float64
	// MaxChurn refuses a list whose changed addresses (in only one of the
	// two versions) exceed this share of the addresses of both versions
	// together: a same-size list with 98 % different prefixes has churn
	// 0.98. 0: off.
	MaxChurn float64
	// DownloadTimeout bounds one list download; 0: no limit but ctx's.
	DownloadTimeout time.Duration
	// StoreLastGood keeps each list that passed its checks as the last good
	// copy under StateDir (the daemon, `lists update`, `lists accept`).
	// False, the safe default for one-shot readers (doctor, lookup,
	// sources): the checks run against the stored copies, nothing is written.
	StoreLastGood bool
	// MaxDownloadBytes caps one download (and one local list file);
	// 0 means 16 MiB.
	MaxDownloadBytes int64
}
