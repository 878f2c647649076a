package ami

import "context"

// Typed event delivery: the client parses each security event once and
// hands it to its consumer (the engine), so an event travels ami → engine →
// firewall with no return trip through the code that wired them.

// SecurityHandler consumes parsed security events, in order, from one
// goroutine (the engine's Handle). It must not keep ev's strings beyond
// what it copies: they may share the message's memory.
type SecurityHandler func(ctx context.Context, ev SecurityEvent)

// Tee is a handler calling each of hs in order (the engine first, then
// observers such as a status page's recent list).
func Tee(hs ...SecurityHandler) SecurityHandler {
	return func(ctx context.Context, ev SecurityEvent) {
		for _, h := range hs {
			h(ctx, ev)
		}
	}
}

// EventLabel bounds an event type for metric labels: a security type or one
// of the contact/peer events sipsentry follows is itself, anything else
// "other" (an injected "Event:" header, recorded s9-11, must not mint a time
// series per attacker-chosen value).
func EventLabel(typ string) string {
	if isSecurityType(typ) {
		return typ
	}
	switch typ {
	case "ContactStatus", "PeerStatus", "DeviceStateChange", "FullyBooted", "Shutdown", "Reload":
		return typ
	}
	return "other"
}

// Feed routes m as the client's dispatcher does with what it reads: a
// security event parsed to OnSecurityEvent, anything else to OnMessage. A
// replay of a capture calls it for each message, so replayed and live
// events take one path. It runs on the caller's goroutine.
func (c *Client) Feed(ctx context.Context, m Message) { c.route(ctx, m) }

// route is the dispatcher's work for one event.
func (c *Client) route(ctx context.Context, m Message) {
	typ := m.Get("Event")
	if c.cfg.OnEventType != nil && typ != "" {
		c.cfg.OnEventType(EventLabel(typ))
	}
	if c.cfg.OnSecurityEvent == nil || !IsSecurityEvent(&m) {
		if c.cfg.OnMessage != nil {
			c.cfg.OnMessage(m)
		}
		return
	}
	ev, err := ParseSecurityEvent(&m)
	if err != nil {
		c.unusable.Add(1)
		c.log.Debug("ami: security event without a usable source", "event", typ, "err", err)
		return
	}
	c.security.Add(1)
	c.cfg.OnSecurityEvent(ctx, ev)
}

// Subscribe sets the consumer of parsed security events (OnSecurityEvent)
// and of event type labels (OnEventType, may be nil). Call it before Run,
// Connect or Feed: the consumer (the engine) is often built after the client
// it needs for contact look-ups.
func (c *Client) Subscribe(security SecurityHandler, types func(label string)) {
	c.cfg.OnSecurityEvent = security
	c.cfg.OnEventType = types
}
