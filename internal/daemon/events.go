package daemon

import (
	"context"
	"time"

	"github.com/sipsentry/sipsentry/ami"
)

// subscribe wires where the AMI side's events go: each security event,
// parsed by the client, straight to the engine (then to the drop watcher's
// probations and the status page's recent list); each event's type label to
// its counter. The daemon is not on the event's path: ami → engine →
// firewall.
func (d *daemon) subscribe() {
	d.events.Subscribe(ami.Tee(d.eng.Handle, d.dw.observe, d.recent.observe), d.met.AMIEvent)
}

// observe is the drop watcher as a security-event subscriber (nil: none).
func (s *dropwatchService) observe(ctx context.Context, ev ami.SecurityEvent) {
	s.securityEvent(ctx, &ev)
}

// observe is the recent list as a security-event subscriber.
func (r *recentEvents) observe(_ context.Context, ev ami.SecurityEvent) { r.add(ev, time.Now()) }
