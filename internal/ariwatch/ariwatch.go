// Package ariwatch is sipsentry's optional Asterisk REST Interface (ARI)
// companion: it follows the live contact and peer states over the ARI event
// websocket and, when a source is banned, hangs up the live channels whose
// PJSIP remote address is that source (toll fraud stops mid-call).
//
// It decodes events with github.com/CyCoreSystems/ari/v5 but runs its own
// websocket loop and REST calls (context, timeouts, backoff; see the ARI
// section of docs/dependencies.md for why). It never originates, redirects or
// changes a channel other than hanging up one whose source was banned, and it
// never puts the ARI password in a URL or a log line.
package ariwatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/CyCoreSystems/ari/v5"
	"golang.org/x/net/websocket"

	"github.com/sipsentry/sipsentry/internal/config"
)

// RemoteAddrVar is the channel function that yields a PJSIP channel's
// signalling source ("203.0.113.5:5060" or "[2001:db8::1]:5060").
const RemoteAddrVar = "CHANNEL(pjsip,remote_addr)"

// maxEventBytes bounds one websocket message; ARI events are a few KiB.
const maxEventBytes = 1 << 20

// Config says how to reach ARI.
type Config struct {
	// URL is the REST root, e.g. "http://127.0.0.1:8088/ari".
	URL string
	// WebsocketURL is the events endpoint; empty derives it from URL
	// (http→ws, https→wss, + "/events").
	WebsocketURL string
	Username     string
	Password     string
	Application  string
	// Timeout bounds each REST request and the websocket handshake.
	Timeout time.Duration
	// ReconnectMax caps the reconnect backoff.
	ReconnectMax time.Duration
	Logger       *slog.Logger
	// HTTPClient is used for REST calls; nil means a private client.
	HTTPClient *http.Client
	// OnEvent, if set, sees every decoded event type (for metrics).
	OnEvent func(eventType string)
}

// FromConfig builds a Config from the [ari] table. password comes from
// (*config.Config).ARIPassword so that the mode check happens once.
func FromConfig(c config.ARI, password string, log *slog.Logger) Config {
	return Config{
		URL: c.URL, WebsocketURL: c.WebsocketURL, Username: c.Username,
		Password: password, Application: c.Application, Logger: log,
	}
}

// ContactState is the last known state of one contact (from ContactStatusChange).
type ContactState struct {
	Endpoint      string // "PJSIP/1001"
	AOR           string
	URI           string
	Status        string // NonQualified, Reachable, Unreachable, Removed, ...
	RoundtripUsec string
	Updated       time.Time
}

// PeerState is the last known state of one endpoint's peer (from PeerStatusChange).
type PeerState struct {
	Endpoint string // "PJSIP/1001"
	Status   string // Reachable, Unreachable, ...
	Address  string
	Updated  time.Time
}

// Watcher follows ARI events and performs hangups. Safe for concurrent use.
type Watcher struct {
	cfg   Config
	wsURL string
	http  *http.Client
	log   *slog.Logger

	connected atomic.Bool

	mu       sync.Mutex
	contacts map[string]ContactState // key: AOR + " " + URI
	peers    map[string]PeerState    // key: endpoint
	events   uint64
}

// ErrConfig marks a Config that cannot work.
var ErrConfig = errors.New("ariwatch: bad configuration")

// New checks cfg; it does not connect (Run does).
func New(cfg Config) (*Watcher, error) {
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: [ari] url is empty (e.g. \"http://127.0.0.1:8088/ari\")", ErrConfig)
	}
	u, err := url.Parse(strings.TrimRight(cfg.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: [ari] url %q is not an http(s) URL", ErrConfig, cfg.URL)
	}
	cfg.URL = u.String()
	if cfg.Username == "" || cfg.Password == "" {
		return nil, fmt.Errorf("%w: [ari] needs username and password (or password_file)", ErrConfig)
	}
	if cfg.Application == "" {
		cfg.Application = "sipsentry"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ws := cfg.WebsocketURL
	if ws == "" {
		w := *u
		w.Scheme = map[string]string{"http": "ws", "https": "wss"}[u.Scheme]
		w.Path = strings.TrimRight(u.Path, "/") + "/events"
		ws = w.String()
	}
	wu, err := url.Parse(ws)
	if err != nil || (wu.Scheme != "ws" && wu.Scheme != "wss") {
		return nil, fmt.Errorf("%w: [ari] websocket_url %q is not a ws(s) URL", ErrConfig, ws)
	}
	q := wu.Query()
	q.Set("app", cfg.Application)
	q.Set("subscribeAll", "true")
	wu.RawQuery = q.Encode()
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Timeout}
	}
	return &Watcher{
		cfg: cfg, wsURL: wu.String(), http: hc, log: cfg.Logger,
		contacts: map[string]ContactState{}, peers: map[string]PeerState{},
	}, nil
}

// Connected reports whether the event websocket is up.
func (w *Watcher) Connected() bool { return w.connected.Load() }

// Events returns how many events were decoded since start.
func (w *Watcher) Events() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

// Contacts returns the live contact states, sorted by AOR then URI.
func (w *Watcher) Contacts() []ContactState {
	w.mu.Lock()
	out := make([]ContactState, 0, len(w.contacts))
	for _, c := range w.contacts {
		out = append(out, c)
	}
	w.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].AOR != out[j].AOR {
			return out[i].AOR < out[j].AOR
		}
		return out[i].URI < out[j].URI
	})
	return out
}

// Peers returns the live peer states, sorted by endpoint.
func (w *Watcher) Peers() []PeerState {
	w.mu.Lock()
	out := make([]PeerState, 0, len(w.peers))
	for _, p := range w.peers {
		out = append(out, p)
	}
	w.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Endpoint < out[j].Endpoint })
	return out
}

// Run keeps the event websocket open until ctx ends, reconnecting with
// backoff and jitter. It returns nil when ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.session(ctx)
		w.connected.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > w.cfg.ReconnectMax {
			backoff = 250 * time.Millisecond // it had been up a while: retry soon
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		w.log.Warn("ariwatch: event websocket down; reconnecting", "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, w.cfg.ReconnectMax)
	}
	return nil
}

// session runs one websocket connection until it fails or ctx ends.
func (w *Watcher) session(ctx context.Context) error {
	wc, err := websocket.NewConfig(w.wsURL, "http://localhost/")
	if err != nil {
		return fmt.Errorf("ariwatch: websocket config: %w", err)
	}
	// Basic auth in a header, never api_key in the URL: URLs end up in logs.
	wc.Header.Set("Authorization", "Basic "+basicAuth(w.cfg.Username, w.cfg.Password))
	dctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	ws, err := wc.DialContext(dctx)
	cancel()
	if err != nil {
		return fmt.Errorf("ariwatch: connecting to %s: %w (check [ari] url, username, password and that ARI is enabled in http.conf/ari.conf)", redact(w.wsURL), err)
	}
	ws.MaxPayloadBytes = maxEventBytes
	stop := context.AfterFunc(ctx, func() { ws.Close() })
	defer stop()
	defer ws.Close()
	w.connected.Store(true)
	w.log.Info("ariwatch: connected", "url", redact(w.wsURL), "app", w.cfg.Application)
	for {
		var data []byte
		if err := websocket.Message.Receive(ws, &data); err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("ariwatch: Asterisk closed the event websocket")
			}
			return fmt.Errorf("ariwatch: reading event: %w", err)
		}
		w.HandleMessage(data)
	}
}

// HandleMessage decodes one websocket message and updates the live state.
// Unknown event types are counted and ignored: a newer Asterisk must not
// break the watcher.
func (w *Watcher) HandleMessage(data []byte) {
	var typ struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &typ); err != nil || typ.Type == "" {
		w.log.Debug("ariwatch: undecodable event ignored", "bytes", len(data))
		return
	}
	if w.cfg.OnEvent != nil {
		w.cfg.OnEvent(typ.Type)
	}
	w.mu.Lock()
	w.events++
	w.mu.Unlock()
	if typ.Type != ari.Events.ContactStatusChange && typ.Type != ari.Events.PeerStatusChange {
		return
	}
	ev, err := ari.DecodeEvent(data)
	if err != nil {
		w.log.Debug("ariwatch: bad event ignored", "type", typ.Type, "err", err)
		return
	}
	switch e := ev.(type) {
	case *ari.ContactStatusChange:
		ep := e.Endpoint.Technology + "/" + e.Endpoint.Resource
		c := ContactState{
			Endpoint: ep, AOR: e.ContactInfo.Aor, URI: e.ContactInfo.Uri,
			Status: e.ContactInfo.ContactStatus, RoundtripUsec: e.ContactInfo.RoundtripUsec,
			Updated: time.Time(e.Timestamp),
		}
		key := c.AOR + " " + c.URI
		w.mu.Lock()
		if c.Status == "Removed" {
			delete(w.contacts, key)
		} else {
			w.contacts[key] = c
		}
		w.mu.Unlock()
		w.log.Debug("ariwatch: contact", "endpoint", ep, "uri", c.URI, "status", c.Status)
	case *ari.PeerStatusChange:
		ep := e.Endpoint.Technology + "/" + e.Endpoint.Resource
		p := PeerState{Endpoint: ep, Status: e.Peer.PeerStatus, Address: e.Peer.Address, Updated: time.Time(e.Timestamp)}
		w.mu.Lock()
		w.peers[ep] = p
		w.mu.Unlock()
		w.log.Debug("ariwatch: peer", "endpoint", ep, "status", p.Status)
	}
}

// Hangup has the signature of engine.Deps.Hangup.
func (w *Watcher) Hangup(ctx context.Context, a netip.Addr) error {
	_, err := w.HangupSource(ctx, a)
	return err
}

// HangupSource hangs up every live PJSIP channel whose remote address is a
// and returns the IDs of the channels hung up. A channel that vanishes
// between listing and hangup is not an error.
func (w *Watcher) HangupSource(ctx context.Context, a netip.Addr) ([]string, error) {
	a = a.Unmap()
	// Only id and name are needed; a minimal struct keeps a richer or newer
	// channel JSON from failing the decode.
	var chans []struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	if err := w.rest(ctx, http.MethodGet, "/channels", nil, &chans); err != nil {
		return nil, err
	}
	var hung []string
	var errs []error
	for _, ch := range chans {
		// Only PJSIP channels have CHANNEL(pjsip,...); asking others is an error.
		if !strings.HasPrefix(ch.Name, "PJSIP/") || ch.ID == "" {
			continue
		}
		var v struct {
			Value string `json:"value"`
		}
		q := url.Values{"variable": {RemoteAddrVar}}
		err := w.rest(ctx, http.MethodGet, "/channels/"+url.PathEscape(ch.ID)+"/variable", q, &v)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		got, ok := ParseRemoteAddr(v.Value)
		if !ok || got != a {
			continue
		}
		err = w.rest(ctx, http.MethodDelete, "/channels/"+url.PathEscape(ch.ID), url.Values{"reason": {"normal"}}, nil)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		w.log.Warn("ariwatch: hung up the banned source's channel", "ip", a, "channel", ch.Name, "id", ch.ID)
		hung = append(hung, ch.ID)
	}
	return hung, errors.Join(errs...)
}

// ParseRemoteAddr reads CHANNEL(pjsip,remote_addr): "203.0.113.5:5060",
// "[2001:db8::1]:5060" or a bare address.
func ParseRemoteAddr(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// StatusError is a non-2xx answer from ARI.
type StatusError struct {
	Method, Path string
	Code         int
	Message      string
}

func (e *StatusError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Code)
	}
	return fmt.Sprintf("ariwatch: %s %s: HTTP %d: %s", e.Method, e.Path, e.Code, msg)
}

func isNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

func (w *Watcher) rest(ctx context.Context, method, path string, q url.Values, out any) error {
	u := w.cfg.URL + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return fmt.Errorf("ariwatch: %s %s: %w", method, path, err)
	}
	req.SetBasicAuth(w.cfg.Username, w.cfg.Password)
	resp, err := w.http.Do(req)
	if err != nil {
		return fmt.Errorf("ariwatch: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEventBytes))
	if err != nil {
		return fmt.Errorf("ariwatch: %s %s: reading answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var m struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &m)
		if resp.StatusCode == http.StatusUnauthorized {
			m.Message = "unauthorized: check [ari] username and password"
		}
		return &StatusError{Method: method, Path: path, Code: resp.StatusCode, Message: m.Message}
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return fmt.Errorf("ariwatch: %s %s: bad JSON answer: %w", method, path, err)
		}
	}
	return nil
}

func basicAuth(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// redact drops credentials from a URL before it is logged.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	q := u.Query()
	if q.Has("api_key") {
		q.Set("api_key", "REDACTED")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
