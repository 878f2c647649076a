package hostaddr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// ifaddr identifies one address on one link: the same address may sit on
// two links, and removing it from one must not forget the other.
type ifaddr struct {
	link   int
	prefix netip.Prefix
}

// Watch loads the host's current addresses, then follows their changes by
// netlink until ctx is done. It returns once the first list is loaded, so
// the Set is right from the start; an error means netlink is unusable (the
// caller may fall back to Fixed). Later subscription faults are logged and
// the watch starts over from a fresh list.
func Watch(ctx context.Context, log *slog.Logger) (*Set, error) {
	return watchAt(ctx, log, netns.None())
}

// watchAt is Watch in the network namespace ns (netns.None(): the
// caller's); tests watch a namespace of their own.
func watchAt(ctx context.Context, log *slog.Logger, ns netns.NsHandle) (*Set, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &watcher{set: &Set{}, log: log, ns: ns}
	sub, err := w.subscribe(ctx)
	if err != nil {
		return nil, err
	}
	go w.run(ctx, sub)
	return w.set, nil
}

type watcher struct {
	set *Set
	log *slog.Logger
	ns  netns.NsHandle
	// addrs is the current address set; only run's goroutine (and the
	// first subscribe, before run starts) touches it.
	addrs map[ifaddr]bool
}

// subscription is one live netlink subscription.
type subscription struct {
	updates <-chan netlink.AddrUpdate
	stop    chan struct{}
	failed  chan error
}

// close ends the subscription. netlink's reader may be blocked sending
// one more update: drain the channel until it closes it, so that goroutine
// ends too.
func (s *subscription) close() {
	close(s.stop)
	go func() {
		for range s.updates {
		}
	}()
}

// resubscribeAfter spaces out attempts after a subscription fault.
const resubscribeAfter = time.Second

// subscribe subscribes first and lists second, so no change falls between
// the two: updates queued meanwhile are applied after the list, and since
// each add or delete sets one address's final state, replaying them in
// order converges on the kernel's set.
func (w *watcher) subscribe(ctx context.Context) (*subscription, error) {
	ch := make(chan netlink.AddrUpdate, 256)
	sub := &subscription{updates: ch, stop: make(chan struct{}), failed: make(chan error, 1)}
	ns := w.ns
	err := netlink.AddrSubscribeWithOptions(ch, sub.stop, netlink.AddrSubscribeOptions{
		Namespace: &ns,
		ErrorCallback: func(err error) {
			select {
			case sub.failed <- err:
			default:
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("hostaddr: netlink address subscription: %w", err)
	}
	h, err := netlink.NewHandleAt(w.ns)
	if err != nil {
		sub.close()
		return nil, fmt.Errorf("hostaddr: netlink handle: %w", err)
	}
	defer h.Close()
	list, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		sub.close()
		return nil, fmt.Errorf("hostaddr: listing the host's addresses: %w", err)
	}
	w.addrs = make(map[ifaddr]bool, len(list))
	for _, a := range list {
		if p, ok := prefixOf(a.IPNet); ok {
			w.addrs[ifaddr{a.LinkIndex, p}] = true
		}
	}
	w.publish()
	return sub, ctx.Err()
}

func (w *watcher) run(ctx context.Context, sub *subscription) {
	for {
		err := w.follow(ctx, sub)
		sub.close()
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("hostaddr: address watch interrupted; listing the host's addresses again", "err", err)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(resubscribeAfter):
			}
			if sub, err = w.subscribe(ctx); err == nil {
				break
			}
			w.log.Warn("hostaddr: address watch not restarted; the last known addresses stay in use", "err", err, "retry_in", resubscribeAfter)
		}
	}
}

// follow applies updates until the subscription fails or ctx is done.
// Updates that arrive together are applied as one table swap.
func (w *watcher) follow(ctx context.Context, sub *subscription) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-sub.failed:
			return err
		case u, ok := <-sub.updates:
			if !ok {
				return errors.New("hostaddr: netlink subscription closed")
			}
			w.apply(u)
			for drained := false; !drained; {
				select {
				case u, ok := <-sub.updates:
					if !ok {
						w.publish()
						return errors.New("hostaddr: netlink subscription closed")
					}
					w.apply(u)
				default:
					drained = true
				}
			}
			w.publish()
		}
	}
}

func (w *watcher) apply(u netlink.AddrUpdate) {
	p, ok := prefixOf(&u.LinkAddress)
	if !ok {
		return
	}
	k := ifaddr{u.LinkIndex, p}
	if u.NewAddr {
		w.addrs[k] = true
	} else {
		delete(w.addrs, k)
	}
}

func (w *watcher) publish() {
	ps := make([]netip.Prefix, 0, len(w.addrs))
	for k := range w.addrs {
		ps = append(ps, k.prefix)
	}
	before := w.set.Prefixes()
	w.set.replace(ps)
	if after := w.set.Prefixes(); before != nil && !slices.Equal(before, after) {
		// Rare (DHCP, an admin's ip addr add): worth a line.
		w.log.Info("hostaddr: the host's addresses changed", "addresses", fmt.Sprint(after))
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 || (a.Is4() && bits != 32) || (a.Is6() && bits != 128) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
