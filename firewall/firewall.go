// Package firewall turns decisions into kernel state: named address sets and
// the rules that consult them. It takes netip values and durations only and
// knows nothing of AMI, countries or the engine's reasons beyond a comment.
//
// Each backend lives in its own folder (iptables, dryrun; nftables later) and
// passes the shared suite in firewall/fwtest. A backend never touches chains,
// rules or sets it did not create.
//
// A backend applies a desired state it does not own: which entries the sets
// hold is the caller's (the engine's bans and allows, the daemon's
// countries), given to Replace, Add, BulkLoad and Verify. A backend must
// never add entries of its own (not even from a config) nor read the
// daemon's configuration; it takes Options of netip, port and time values.
package firewall

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Set names one of sipsentry's sets; a backend maps it to a kernel name per
// family (e.g. "sipsentry-ban-v4").
type Set string

const (
	// SetAllowCountry holds the allowed countries' prefixes (no timeouts).
	SetAllowCountry Set = "allow-cc"
	// SetAllow holds static allow CIDRs and learned push servers (timeouts).
	SetAllow Set = "allow"
	// SetBan holds banned source addresses (timeouts).
	SetBan Set = "ban"
	// SetBanNet holds banned ranges (timeouts): remote decisions of scope
	// Range (CrowdSec). The engine's own bans are single addresses in SetBan.
	SetBanNet Set = "ban-net"
	// SetProbation holds addresses on push probation (timeouts): they reach
	// the UDP SIP ports only, never RTP, until the entry expires.
	SetProbation Set = "probation"
)

// Sets lists every set in rule order.
var Sets = []Set{SetAllow, SetBan, SetBanNet, SetProbation, SetAllowCountry}

// Entry is one member of a set. Timeout 0 means permanent; on SetBan the
// prefix is always a single address.
type Entry struct {
	Prefix  netip.Prefix
	Timeout time.Duration
	Comment string
}

// Status is what `sipsentry firewall show` prints.
type Status struct {
	Backend string    `json:"backend"`
	Mode    string    `json:"mode"` // enforce | monitor
	Up      bool      `json:"up"`
	Rules   []Rule    `json:"rules"`
	Sets    []SetInfo `json:"sets"`
}

// Rule is one rule of sipsentry's (a jump from INPUT or a rule of its
// chain) with its counters.
type Rule struct {
	Family  string `json:"family"` // inet | inet6
	Spec    string `json:"spec"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// SetInfo is a set's size per family.
type SetInfo struct {
	Set     Set    `json:"set"`
	Family  string `json:"family"`
	Entries int    `json:"entries"`
	MaxElem int    `json:"maxelem"`
	Memory  int    `json:"memory_bytes"` // as the kernel reports; 0 if unknown
}

// Backend is the firewall as the engine and the CLI see it. Every method is
// idempotent where its name allows: Up twice gives the same ruleset, Add of a
// present entry refreshes its timeout and comment, Delete of an absent entry
// is no error.
type Backend interface {
	// Up creates sipsentry's sets, chain and jump rules.
	Up(ctx context.Context) error
	// Down removes exactly what Up created.
	Down(ctx context.Context) error
	// Replace swaps a whole set's content atomically: no moment where the
	// set is empty or half full.
	Replace(ctx context.Context, set Set, entries []Entry) error
	// Add inserts or refreshes entries (a bulk add is one batch).
	Add(ctx context.Context, set Set, entries ...Entry) error
	// Delete removes entries; absent ones are ignored.
	Delete(ctx context.Context, set Set, prefixes ...netip.Prefix) error
	// Contains tells whether addr matches an entry of set.
	Contains(ctx context.Context, set Set, addr netip.Addr) (bool, error)
	// List returns a set's entries with their remaining timeouts.
	List(ctx context.Context, set Set) ([]Entry, error)
	// DropFlows deletes addr's conntrack entries so an established UDP flow
	// meets the new ban at its next packet.
	DropFlows(ctx context.Context, addr netip.Addr) error
	// Status reports rules with counters and set sizes.
	Status(ctx context.Context) (Status, error)
	Close() error
}

// Sentinel errors; backends wrap them with details.
var (
	// ErrNotOurs: a set or chain of sipsentry's name exists but was not made
	// by sipsentry; nothing was changed.
	ErrNotOurs = errors.New("firewall: exists but was not created by sipsentry")
	// ErrSetFull: the kernel set reached maxelem; the entry was not added.
	ErrSetFull = errors.New("firewall: set is full")
	// ErrUnavailable: a tool, kernel module or capability is missing.
	ErrUnavailable = errors.New("firewall: unavailable")
	// ErrInvalid: an entry is not valid for its set; nothing was changed.
	ErrInvalid = errors.New("firewall: invalid entry")
)

// Family returns "inet" or "inet6" for a prefix or address.
func Family(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "inet"
	}
	return "inet6"
}

// FlowDropper is implemented by backends that can delete one known flow by
// its addresses with a single lookup. DropFlows must find a source's flows
// by walking the kernel's whole conntrack table (tens of milliseconds on a
// large host); DropFlow cuts the flow the engine saw at once, and DropFlows
// can follow for the rest (RTP, other ports).
type FlowDropper interface {
	// DropFlow deletes the conntrack entry of the proto ("udp" or "tcp")
	// flow between remote and local, whichever side opened it. An absent
	// flow is no error.
	DropFlow(ctx context.Context, proto string, remote, local netip.AddrPort) error
}

// BulkFlowDropper is implemented by backends that can flush the flows of
// many addresses in one pass over the conntrack table (DropFlows walks the
// whole table once per address: ~10-30 ms each on a large host).
type BulkFlowDropper interface {
	// DropFlowsOf is DropFlows for every address in addrs, in one pass.
	DropFlowsOf(ctx context.Context, addrs []netip.Addr) error
}

// SetStatter is implemented by backends that can report their sets' sizes
// without Status's rule listing: a cost independent of the number of
// entries and of processes, for /status and health checks.
type SetStatter interface {
	// SetInfos returns each set's size per family; a missing kernel set
	// is left out.
	SetInfos(ctx context.Context) ([]SetInfo, error)
}

// Preparer is implemented by backends that can create their sets without
// the rules that consult them, so that the allow sets can be filled before
// any DROP rule exists (no lock-out window on a first up).
type Preparer interface {
	// Prepare creates sipsentry's sets (and nothing else) if missing.
	Prepare(ctx context.Context) error
}

// Fill is what UpFilled loads into one set before any rule exists.
type Fill struct {
	Set     Set
	Entries []Entry
	// Merge adds the entries and keeps the set's others (e.g. `firewall up`
	// from the CLI adding the static allows while a daemon may hold learned
	// ones); false replaces the set's whole content.
	Merge bool
}

// UpFilled brings b up with the given sets filled from the first packet
// on: Prepare, the fills, Up when b is a Preparer; otherwise Up then the
// fills. The allow sets are filled this way so that no DROP rule exists
// while they are empty (no lock-out window on a first up).
func UpFilled(ctx context.Context, b Backend, fills ...Fill) error {
	fill := func() error {
		for _, f := range fills {
			var err error
			if f.Merge {
				if len(f.Entries) > 0 {
					err = b.Add(ctx, f.Set, f.Entries...)
				}
			} else {
				err = b.Replace(ctx, f.Set, f.Entries)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	p, ok := b.(Preparer)
	if ok {
		if err := p.Prepare(ctx); err != nil {
			return err
		}
		if err := fill(); err != nil {
			return err
		}
	}
	if err := b.Up(ctx); err != nil {
		return err
	}
	if !ok {
		return fill()
	}
	return nil
}

// UpWith is UpFilled with the allowed-country set replaced by allowCC; a
// nil allowCC leaves the set's content as it is.
func UpWith(ctx context.Context, b Backend, allowCC []Entry) error {
	if allowCC == nil {
		return UpFilled(ctx, b)
	}
	return UpFilled(ctx, b, Fill{Set: SetAllowCountry, Entries: allowCC})
}
