package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/state"
)

// FlagForeignLogin is the flag kind for a successful login from outside the
// allowed countries that is not a recognised push server.
const FlagForeignLogin = "foreign_login"

// pushLearner examines foreign logins off the hot path: it asks Asterisk
// for the contact (User-Agent), checks the forward-confirmed PTR, and learns
// the address as a push server or flags the login.
type pushLearner struct {
	queue       chan pushCand
	examiningMu sync.Mutex // guards examining
	// examining holds the candidates queued or being examined: one
	// examination per address at a time (REGISTER + re-REGISTER).
	examining map[netip.Addr]bool
	flaggedMu sync.Mutex // guards flagged
	// flagged holds the foreign logins flagged lately (UnixNano), examined
	// again at most every reflagEvery.
	flagged map[netip.Addr]int64
}

func (p *pushLearner) init() {
	p.queue = make(chan pushCand, 256)
	p.examining = map[netip.Addr]bool{}
	p.flagged = map[netip.Addr]int64{}
}

func (p *pushLearner) flaggedAt(a netip.Addr) (int64, bool) {
	p.flaggedMu.Lock()
	defer p.flaggedMu.Unlock()
	t, ok := p.flagged[a]
	return t, ok
}

func (p *pushLearner) setFlagged(a netip.Addr, t int64) {
	p.flaggedMu.Lock()
	p.flagged[a] = t
	p.flaggedMu.Unlock()
}

// expireFlags forgets flags older than reflagEvery.
func (p *pushLearner) expireFlags(now int64) {
	p.flaggedMu.Lock()
	defer p.flaggedMu.Unlock()
	for a, t := range p.flagged {
		if now-t >= int64(reflagEvery) {
			delete(p.flagged, a)
		}
	}
}

// runPushLearner examines queued candidates until ctx ends.
func (e *Engine) runPushLearner(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-e.push.queue:
			e.examine(ctx, c)
		}
	}
}

type pushCand struct {
	addr    netip.Addr
	account string
	service string
	at      time.Time
	refresh bool // already learned: only extend the allow
	// contact, when set, is the registration itself (a resync after an AMI
	// login): no PJSIPShowContacts look-up is needed.
	contact *ami.Contact
}

// authOK looks at a SuccessfulAuth (never an injected one: those are
// KindInjection and never get here) from a foreign address.
func (e *Engine) authOK(a netip.Addr, ev *ami.SecurityEvent, now time.Time) {
	if ev.IsInjection() || !e.foreign(a) {
		return
	}
	al, learned := e.allows.pushInfo(a)
	nowN := now.UnixNano()
	if learned && al.how != state.HowStatic && (al.until == 0 || al.until > nowN) {
		if nowN-al.last < int64(refreshEvery) {
			return
		}
		e.enqueuePush(pushCand{addr: a, account: ev.AccountID, service: ev.Service, at: now, refresh: true})
		return
	}
	if last, ok := e.push.flaggedAt(a); ok && nowN-last < int64(reflagEvery) {
		return // flagged lately: no new look-ups and warnings at every re-REGISTER
	}
	e.enqueuePush(pushCand{addr: a, account: ev.AccountID, service: ev.Service, at: now})
}

// ResyncContacts takes the contacts Asterisk holds, fetched after every
// AMI (re)login, and feeds each foreign one to the push learner exactly as
// its live registration would have been: a push server that registered
// while the connection was down is learned (User-Agent in push.user_agents
// or forward-confirmed PTR in push.domains) or the login is flagged; a
// learned one is refreshed; an in-country contact is left alone. Contact
// fields are hostile: the address must parse, everything kept is
// sanitized, and the work is bounded by the learner's queue.
func (e *Engine) ResyncContacts(ctx context.Context, cs []ami.Contact) {
	now := e.now()
	nowN := now.UnixNano()
	queued, dropped, skipped := 0, 0, 0
	for i := range cs {
		if ctx.Err() != nil {
			return
		}
		c := cs[i]
		a, err := netip.ParseAddr(strings.Trim(c.ViaAddr, "[]"))
		if err != nil || a.Zone() != "" || c.Endpoint == "" {
			skipped++
			continue
		}
		a = a.Unmap()
		if !e.foreign(a) {
			continue
		}
		cand := pushCand{addr: a, account: c.Endpoint, service: "PJSIP", at: now, contact: &c}
		if al, learned := e.allows.pushInfo(a); learned && al.how != state.HowStatic && (al.until == 0 || al.until > nowN) {
			if nowN-al.last < int64(refreshEvery) {
				continue
			}
			cand.refresh = true
		} else if last, ok := e.push.flaggedAt(a); ok && nowN-last < int64(reflagEvery) {
			continue
		}
		switch e.tryEnqueuePush(cand) {
		case enqueued:
			queued++
		case queueFull:
			dropped++
		}
	}
	e.log.Info("engine: AMI contacts resynchronised", "contacts", len(cs), "examined", queued, "unparsable", skipped, "dropped_queue_full", dropped)
	if dropped > 0 {
		e.log.Warn("engine: push-learning queue full during the contact resync; some foreign contacts were not examined (they are at their next registration)", "dropped", dropped)
	}
}

type enqueueResult int

const (
	enqueued enqueueResult = iota
	alreadyExamining
	queueFull
)

func (e *Engine) enqueuePush(c pushCand) {
	if e.tryEnqueuePush(c) == queueFull {
		e.log.Warn("engine: push-learning queue full; a foreign login was not examined", "addr", c.addr)
	}
}

// tryEnqueuePush queues c unless its address is being examined already
// or the queue is full (counted in droppedPush).
func (e *Engine) tryEnqueuePush(c pushCand) enqueueResult {
	p := &e.push
	p.examiningMu.Lock()
	if p.examining[c.addr] {
		p.examiningMu.Unlock()
		return alreadyExamining // one examination per address at a time (REGISTER + re-REGISTER)
	}
	p.examining[c.addr] = true
	p.examiningMu.Unlock()
	e.work.add()
	select {
	case p.queue <- c:
		return enqueued
	default:
		e.finish(c.addr)
		e.droppedPush.Add(1)
		return queueFull
	}
}

// finish marks a's examination done.
func (e *Engine) finish(a netip.Addr) {
	e.push.examiningMu.Lock()
	delete(e.push.examining, a)
	e.push.examiningMu.Unlock()
	e.work.done()
}

// examine decides about one foreign login: learn it as a push server or
// flag it.
func (e *Engine) examine(ctx context.Context, c pushCand) {
	defer e.finish(c.addr)
	if c.refresh {
		e.refreshAllow(ctx, c)
		return
	}
	if c.service != "PJSIP" {
		e.flag(c, "", fmt.Sprintf("successful %s login as %q from outside the allowed countries", c.service, sanitize(c.account, 40)))
		return
	}
	ev := state.PushEvidence{Account: sanitize(c.account, 64), FirstSeen: c.at, LastSeen: c.at}
	ct, ok := ami.Contact{}, false
	if c.contact != nil {
		ct, ok = *c.contact, true
	} else {
		ct, ok = e.findContact(ctx, c.addr, c.account)
	}
	if ok {
		// Contact fields come from the REGISTER: keep them printable.
		ev.UserAgent, ev.URI, ev.AOR = sanitize(ct.UserAgent, 200), sanitize(ct.URI, 300), sanitize(aorOf(ct), 80)
	}
	ev.PTR = e.confirmedPTR(ctx, c.addr)
	switch {
	case ev.UserAgent != "" && e.uaMatches(ev.UserAgent):
		ev.How = state.HowUserAgent
	case ev.PTR != "" && e.domainMatches(ev.PTR):
		ev.How = state.HowPTR
	default:
		note := fmt.Sprintf("successful PJSIP login as %q from outside the allowed countries; not a known push server", sanitize(c.account, 40))
		if ev.UserAgent != "" {
			note += fmt.Sprintf(" (UA %q)", sanitize(ev.UserAgent, 80))
		}
		if ev.PTR != "" {
			note += fmt.Sprintf(" (PTR %s)", ev.PTR)
		}
		e.flag(c, ev.UserAgent, note)
		return
	}
	_ = e.learn(ctx, c.addr, ev, c.at) // logged and counted as a refused decision
}

// pushComment is the allow-set comment of a learned or seeded push server.
func pushComment(how string, ev *state.PushEvidence) string {
	c := "sipsentry: push " + how
	if ev != nil && ev.Account != "" {
		c += " " + ev.Account
	}
	return sanitize(c, 200)
}

func aorOf(c ami.Contact) string {
	// ObjectName is "<aor>;@<hash>".
	if i := strings.Index(c.ObjectName, ";@"); i > 0 {
		return c.ObjectName[:i]
	}
	return c.Endpoint
}

func (e *Engine) flag(c pushCand, ua, note string) {
	e.push.setFlagged(c.addr, c.at.UnixNano())
	e.log.Warn("engine: foreign login flagged, not learned (a stolen password looks the same)",
		"addr", c.addr, "account", sanitize(c.account, 40), "service", c.service, "user_agent", sanitize(ua, 80))
	e.writer.queue(func(b *state.Batch) {
		b.Flags = append(b.Flags, state.Flag{Addr: c.addr, Kind: FlagForeignLogin, Note: note, Time: c.at})
	})
	e.decide(Decision{Time: c.at, Kind: DecisionFlagged, Addr: c.addr, Reason: note})
	if ua != "" {
		e.setUA(c.addr, ua)
	}
}

func (e *Engine) setUA(a netip.Addr, ua string) {
	e.sources.setUA(a, strings.Clone(sanitize(ua, 120)))
}

// learn puts a in the allow set for push.learn_ttl and records the evidence.
func (e *Engine) learn(ctx context.Context, a netip.Addr, ev state.PushEvidence, now time.Time) error {
	ttl := e.opts().Push.LearnTTL
	e.allows.setMu.Lock()
	if err := e.fw.Add(ctx, firewall.SetAllow, firewall.Entry{Prefix: prefixOf(a), Timeout: ttl, Comment: pushComment(ev.How, &ev)}); err != nil {
		e.allows.setMu.Unlock()
		e.log.Error("engine: adding learned push server to the allow set failed", "addr", a, "err", err)
		e.decide(Decision{Time: now, Kind: DecisionRefused, Addr: a, Reason: "learn push server", Err: err.Error()})
		return fmt.Errorf("engine: learning push server %s: %w", a, err)
	}
	kept := ev
	e.allows.setPush(a, allowInfo{until: now.Add(ttl).UnixNano(), how: ev.How, last: now.UnixNano(), evidence: &kept})
	e.allows.setMu.Unlock()
	e.writer.queue(func(b *state.Batch) {
		b.Allows = append(b.Allows, state.Allow{Prefix: prefixOf(a), Until: now.Add(ttl), PushEvidence: ev})
	})
	if ev.UserAgent != "" {
		e.setUA(a, ev.UserAgent)
	}
	e.log.Info("engine: push server learned", "addr", a, "how", ev.How, "account", sanitize(ev.Account, 40),
		"user_agent", sanitize(ev.UserAgent, 80), "ptr", ev.PTR, "ttl", ttl)
	e.decide(Decision{Time: now, Kind: DecisionLearned, Addr: a, Reason: ev.How, Duration: ttl})
	return nil
}

// LearnPush learns a as a push server on evidence another detector of the
// daemon found (dropwatch's probation), the way the engine's own learner
// does: the allow set for push.learn_ttl, the allow book (so the verifier
// and `allows` know it), an allows row with the evidence.
func (e *Engine) LearnPush(ctx context.Context, a netip.Addr, ev state.PushEvidence) error {
	if !a.IsValid() || ev.How == "" {
		return fmt.Errorf("%w: a push server needs an address and how it was recognised", ErrInvalid)
	}
	now := e.now()
	if ev.FirstSeen.IsZero() {
		ev.FirstSeen = now
	}
	if ev.LastSeen.IsZero() {
		ev.LastSeen = now
	}
	return e.learn(ctx, a.Unmap(), ev, now)
}

func (e *Engine) refreshAllow(ctx context.Context, c pushCand) {
	ttl := e.opts().Push.LearnTTL
	e.allows.setMu.Lock()
	al, ok := e.allows.pushInfo(c.addr)
	if !ok { // disallowed meanwhile
		e.allows.setMu.Unlock()
		return
	}
	if err := e.fw.Add(ctx, firewall.SetAllow, firewall.Entry{Prefix: prefixOf(c.addr), Timeout: ttl, Comment: pushComment(al.how, al.evidence)}); err != nil {
		e.allows.setMu.Unlock()
		e.log.Warn("engine: refreshing learned push server failed", "addr", c.addr, "err", err)
		return
	}
	al.until, al.last = c.at.Add(ttl).UnixNano(), c.at.UnixNano()
	if al.evidence != nil {
		ev := *al.evidence
		ev.LastSeen = c.at
		al.evidence = &ev
	}
	e.allows.setPush(c.addr, al)
	e.allows.setMu.Unlock()
	e.writer.queue(func(b *state.Batch) {
		b.Allows = append(b.Allows, state.Allow{Prefix: prefixOf(c.addr), Until: c.at.Add(ttl),
			PushEvidence: state.PushEvidence{How: al.how, FirstSeen: c.at, LastSeen: c.at}})
	})
}

// findContact asks Asterisk for the contact this login registered: the one
// whose Via address is a and whose endpoint is account. Asterisk creates
// the contact after the auth, so it retries briefly.
func (e *Engine) findContact(ctx context.Context, a netip.Addr, account string) (ami.Contact, bool) {
	if e.d.Contacts == nil {
		return ami.Contact{}, false
	}
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		list, err := e.d.Contacts.PJSIPShowContacts(cctx)
		cancel()
		if err != nil {
			e.log.Warn("engine: PJSIPShowContacts failed; push learning falls back to DNS evidence", "err", err)
		}
		for _, c := range list {
			if c.Endpoint != account {
				continue
			}
			if v, err := netip.ParseAddr(strings.Trim(c.ViaAddr, "[]")); err == nil && v.Unmap() == a {
				return c, true
			}
		}
		if attempt >= len(e.d.ContactRetry) {
			return ami.Contact{}, false
		}
		select {
		case <-ctx.Done():
			return ami.Contact{}, false
		case <-time.After(e.d.ContactRetry[attempt]):
		}
	}
}

func (e *Engine) uaMatches(ua string) bool {
	for _, re := range e.opts().Push.UserAgents {
		if re != nil && re.MatchString(ua) {
			return true
		}
	}
	return false
}

func (e *Engine) domainMatches(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	for _, d := range e.opts().Push.Domains {
		d = strings.ToLower(strings.Trim(d, "."))
		if d != "" && (name == d || strings.HasSuffix(name, "."+d)) {
			return true
		}
	}
	return false
}

// confirmedPTR returns a's first PTR name whose A/AAAA records contain a
// (forward-confirmed reverse DNS), or "". Anyone controls their own PTR;
// only the forward look-up in the claimed domain makes it evidence.
func (e *Engine) confirmedPTR(ctx context.Context, a netip.Addr) string {
	if e.d.Resolver == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	names, err := e.d.Resolver.LookupPTR(ctx, a)
	if err != nil {
		e.log.Debug("engine: PTR look-up failed", "addr", a, "err", err)
		return ""
	}
	for i, n := range names {
		if i == 4 {
			break
		}
		addrs, err := e.d.Resolver.LookupAddrs(ctx, n)
		if err != nil {
			continue
		}
		for _, x := range addrs {
			if x.Unmap() == a {
				return strings.ToLower(strings.TrimSuffix(n, "."))
			}
		}
	}
	return ""
}

// Seed resolves push.hosts (A and AAAA) and puts every address in the allow
// set, one bulk add; done at Start and every push.reseed.
func (e *Engine) Seed(ctx context.Context) error {
	if e.d.Resolver == nil || len(e.opts().Push.Hosts) == 0 {
		return nil
	}
	type res struct {
		host  string
		addrs []netip.Addr
		err   error
	}
	out := make([]res, len(e.opts().Push.Hosts))
	var wg sync.WaitGroup
	for i, h := range e.opts().Push.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			a, err := e.d.Resolver.LookupAddrs(cctx, h)
			out[i] = res{h, a, err}
		}()
	}
	wg.Wait()
	now := e.now()
	ttl := e.opts().Push.LearnTTL
	var rows []state.Allow
	seen := map[netip.Addr]bool{}
	failed := 0
	for _, r := range out {
		if r.err != nil {
			failed++
			e.log.Warn("engine: resolving push host failed", "host", r.host, "err", r.err)
			continue
		}
		for _, a := range r.addrs {
			a = a.Unmap()
			if seen[a] || !a.IsGlobalUnicast() && !a.IsPrivate() {
				continue
			}
			seen[a] = true
			rows = append(rows, state.Allow{Prefix: prefixOf(a), Until: now.Add(ttl),
				PushEvidence: state.PushEvidence{How: state.HowSeed, PTR: r.host, FirstSeen: now, LastSeen: now}})
		}
	}
	if len(rows) == 0 {
		if failed > 0 {
			return fmt.Errorf("engine: no push host resolved (%d failed); check push.resolver", failed)
		}
		return nil
	}
	e.allows.setMu.Lock()
	defer e.allows.setMu.Unlock()
	// An address learned from its own login keeps that stronger evidence
	// (name, comment, DB row); the seed only extends it.
	untilN := now.Add(ttl).UnixNano()
	entries := make([]firewall.Entry, len(rows))
	kept := make([]bool, len(rows))
	e.allows.allowsMu.RLock()
	for i, row := range rows {
		ev := row.PushEvidence
		entries[i] = firewall.Entry{Prefix: row.Prefix, Timeout: ttl, Comment: pushComment(state.HowSeed, &ev)}
		if prev, ok := e.allows.push[row.Prefix.Addr()]; ok && prev.how != state.HowSeed {
			kept[i] = true
			entries[i].Comment = pushComment(prev.how, prev.evidence)
			if prev.until == 0 {
				entries[i].Timeout = 0
			} else if prev.until > untilN {
				entries[i].Timeout = time.Duration(prev.until - now.UnixNano())
			}
		}
	}
	e.allows.allowsMu.RUnlock()
	if err := e.fw.Add(ctx, firewall.SetAllow, entries...); err != nil {
		return fmt.Errorf("engine: seeding push hosts into the allow set: %w", err)
	}
	e.allows.allowsMu.Lock()
	var newRows []state.Allow
	for i, row := range rows {
		a := row.Prefix.Addr()
		if prev, ok := e.allows.push[a]; ok && kept[i] {
			if prev.until != 0 {
				prev.until = max(prev.until, untilN)
			}
			e.allows.push[a] = prev
			continue
		}
		ev := row.PushEvidence
		e.allows.push[a] = allowInfo{until: untilN, how: state.HowSeed, last: now.UnixNano(), evidence: &ev}
		newRows = append(newRows, row)
	}
	e.allows.allowsMu.Unlock()
	rows = newRows
	e.writer.queue(func(b *state.Batch) { b.Allows = append(b.Allows, rows...) })
	e.log.Info("engine: push hosts seeded", "addresses", len(entries), "hosts", len(e.opts().Push.Hosts), "failed", failed)
	e.decide(Decision{Time: now, Kind: DecisionSeeded, Reason: fmt.Sprintf("%d addresses from %d push hosts", len(entries), len(e.opts().Push.Hosts)), Duration: ttl})
	return nil
}
