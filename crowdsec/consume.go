package crowdsec

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sink is where accepted remote decisions go (the daemon hands them to the
// engine and the firewall). Add of a present prefix refreshes it. Remove
// takes away only what AddRemote put there (never a local ban of the same
// address); an absent prefix is no error.
type Sink interface {
	AddRemote(ctx context.Context, p netip.Prefix, d time.Duration, origin, scenario string) error
	RemoveRemote(ctx context.Context, p netip.Prefix) error
}

// ConsumerOptions tune the consumer.
type ConsumerOptions struct {
	// PollInterval is the time between two stream pulls (default 10s).
	PollInterval time.Duration
	// MaxRangeV4 and MaxRangeV6 are the widest ranges accepted (default /16
	// and /32): a wider remote decision is refused, so no remote list can
	// ban a country, a cloud region or the Internet wholesale.
	MaxRangeV4, MaxRangeV6 int
	// Refuse, if set, names a reason not to apply p (never-ban rules: the
	// host's addresses, the AMI peer, static and learned allows, allowed
	// countries for ranges); "" accepts.
	Refuse func(p netip.Prefix) string
	// Ours, if set, tells whether a decision for p came back from this
	// process's own publishing (it is not applied a second time).
	Ours   func(p netip.Prefix, now time.Time) bool
	Logger *slog.Logger
}

// ConsumerStats are the consumer's counters.
type ConsumerStats struct {
	Polls, PollFailures, Applied, Removed, Refused, Ignored, Own uint64
	Active                                                       int
	LastPoll                                                     time.Time
}

// Consumer reads the LAPI decisions stream as a bouncer and applies bans of
// scope Ip or Range to a Sink.
type Consumer struct {
	c    *Client
	sink Sink
	o    ConsumerOptions
	log  *slog.Logger

	// activeMu guards active: the prefixes applied, with the decision IDs
	// that hold each (a prefix goes when its last decision is deleted).
	activeMu sync.Mutex
	active   map[netip.Prefix]map[int64]struct{}
	lastPoll time.Time

	polls, pollFailures, applied, removed, refused, ignored, own atomic.Uint64
}

// NewConsumer makes a consumer pulling through c into sink.
func NewConsumer(c *Client, sink Sink, o ConsumerOptions) *Consumer {
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.MaxRangeV4 <= 0 {
		o.MaxRangeV4 = 16
	}
	if o.MaxRangeV6 <= 0 {
		o.MaxRangeV6 = 32
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Consumer{c: c, sink: sink, o: o, log: o.Logger, active: map[netip.Prefix]map[int64]struct{}{}}
}

// Stats returns the counters.
func (c *Consumer) Stats() ConsumerStats {
	c.activeMu.Lock()
	n, last := len(c.active), c.lastPoll
	c.activeMu.Unlock()
	return ConsumerStats{Polls: c.polls.Load(), PollFailures: c.pollFailures.Load(), Applied: c.applied.Load(),
		Removed: c.removed.Load(), Refused: c.refused.Load(), Ignored: c.ignored.Load(), Own: c.own.Load(),
		Active: n, LastPoll: last}
}

// Run pulls the stream (startup first) every PollInterval until ctx ends. A
// failed pull is logged and retried at the next tick; until the first pull
// succeeds, every pull asks for the full startup list.
func (c *Consumer) Run(ctx context.Context) error {
	startup := true
	t := time.NewTicker(c.o.PollInterval)
	defer t.Stop()
	failing := false
	for {
		err := c.Poll(ctx, startup)
		switch {
		case err == nil:
			startup = false
			if failing {
				c.log.Info("crowdsec: decisions stream works again")
			}
			failing = false
		case ctx.Err() != nil:
			return nil
		default:
			if !failing {
				c.log.Warn("crowdsec: pulling decisions failed; retrying every poll interval", "interval", c.o.PollInterval, "err", err)
			}
			failing = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll pulls the stream once and applies it.
func (c *Consumer) Poll(ctx context.Context, startup bool) error {
	c.polls.Add(1)
	s, err := c.c.DecisionsStream(ctx, startup)
	if err != nil {
		c.pollFailures.Add(1)
		return err
	}
	now := time.Now()
	for _, d := range s.Deleted {
		c.delete(ctx, d)
	}
	for _, d := range s.New {
		c.add(ctx, d, now)
	}
	c.activeMu.Lock()
	c.lastPoll = now
	c.activeMu.Unlock()
	return nil
}

// ParseDecision turns a decision's scope and value into a prefix: "Ip" a
// single address, "Range" a CIDR.
func ParseDecision(d Decision) (netip.Prefix, error) {
	v := strings.TrimSpace(d.Value)
	switch strings.ToLower(d.Scope) {
	case "ip":
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("not an IP address: %q", Escape(v, 64))
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	case "range":
		p, err := netip.ParsePrefix(v)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("not a CIDR range: %q", Escape(v, 64))
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	default:
		return netip.Prefix{}, fmt.Errorf("scope %q is not Ip or Range", Escape(d.Scope, 32))
	}
}

// refusal says why p must not be applied, or "".
func (c *Consumer) refusal(p netip.Prefix) string {
	a := p.Addr()
	if p.Bits() < 0 || !p.IsValid() {
		return "invalid prefix"
	}
	switch {
	case a.Is4() && p.Bits() < c.o.MaxRangeV4:
		return fmt.Sprintf("wider than crowdsec.max_range_prefix_v4 (/%d)", c.o.MaxRangeV4)
	case a.Is6() && p.Bits() < c.o.MaxRangeV6:
		return fmt.Sprintf("wider than crowdsec.max_range_prefix_v6 (/%d)", c.o.MaxRangeV6)
	case a.IsUnspecified():
		return "unspecified address"
	case a.IsLoopback():
		return "loopback"
	case a.IsMulticast(), a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast():
		return "multicast or link-local"
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	if c.o.Refuse != nil {
		return c.o.Refuse(p)
	}
	return ""
}

func (c *Consumer) add(ctx context.Context, d Decision, now time.Time) {
	if !strings.EqualFold(d.Type, "ban") {
		c.ignored.Add(1) // captcha, throttle …: nothing a firewall can do
		return
	}
	p, err := ParseDecision(d)
	if err != nil {
		c.ignored.Add(1)
		c.log.Warn("crowdsec: remote decision ignored", "id", d.ID, "err", err)
		return
	}
	if d.Origin == Origin && c.o.Ours != nil && c.o.Ours(p, now) {
		c.own.Add(1) // our own ban coming back: already in the kernel
		return
	}
	if why := c.refusal(p); why != "" {
		c.refused.Add(1)
		c.log.Warn("crowdsec: remote decision refused", "id", d.ID, "prefix", p, "origin", Escape(d.Origin, 64), "why", why)
		return
	}
	dur, err := time.ParseDuration(d.Duration)
	if err != nil || dur <= 0 {
		c.ignored.Add(1)
		c.log.Warn("crowdsec: remote decision without a usable duration ignored", "id", d.ID, "duration", Escape(d.Duration, 32))
		return
	}
	origin := "crowdsec:" + Escape(d.Origin, 32)
	if err := c.sink.AddRemote(ctx, p, dur, origin, Escape(d.Scenario, 128)); err != nil {
		c.refused.Add(1)
		c.log.Warn("crowdsec: remote decision not applied", "id", d.ID, "prefix", p, "err", err)
		return
	}
	c.activeMu.Lock()
	ids := c.active[p]
	if ids == nil {
		ids = map[int64]struct{}{}
		c.active[p] = ids
	}
	ids[d.ID] = struct{}{}
	c.activeMu.Unlock()
	c.applied.Add(1)
}

func (c *Consumer) delete(ctx context.Context, d Decision) {
	p, err := ParseDecision(d)
	if err != nil {
		return
	}
	c.activeMu.Lock()
	held := false
	if ids, ok := c.active[p]; ok {
		delete(ids, d.ID)
		held = len(ids) > 0 // another decision still holds p
		if !held {
			delete(c.active, p)
		}
	}
	c.activeMu.Unlock()
	if held {
		return
	}
	// Also for a prefix this process never applied: an earlier run may have
	// (the kernel entry outlives a restart). The sink removes only remote
	// entries, never a local ban of the same address.
	if err := c.sink.RemoveRemote(ctx, p); err != nil {
		c.log.Warn("crowdsec: removing a deleted remote decision failed", "prefix", p, "err", err)
		return
	}
	c.removed.Add(1)
}
