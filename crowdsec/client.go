package crowdsec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// maxResponseBytes caps what one LAPI answer may make us read: a startup
// stream with the community blocklist is a few MB; a peer that streams
// forever must not grow the daemon.
const maxResponseBytes = 64 << 20

// Sentinel errors.
var (
	// ErrUnauthorized: the LAPI refused the credentials (HTTP 401/403).
	ErrUnauthorized = errors.New("crowdsec: credentials refused")
	// ErrUnreachable: no HTTP answer (connection refused, timeout, DNS).
	ErrUnreachable = errors.New("crowdsec: local API unreachable")
)

// HTTPError is a LAPI answer that was not a success.
type HTTPError struct {
	Method, Path string
	Status       int
	Body         string // first bytes of the answer, for the log
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("crowdsec: %s %s: HTTP %d: %s", e.Method, e.Path, e.Status, e.Body)
}

// Is lets errors.Is(err, ErrUnauthorized) match a 401/403.
func (e *HTTPError) Is(target error) bool {
	return target == ErrUnauthorized && (e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden)
}

// Client talks to one CrowdSec Local API, as a machine (watcher: login,
// alerts) and as a bouncer (decisions stream). Either side may be unset.
// Safe for concurrent use.
type Client struct {
	base      *url.URL
	http      *http.Client
	userAgent string
	machine   MachineCredentials
	apiKey    string

	// tokenMu guards the watcher's JWT and its expiry.
	tokenMu sync.Mutex
	token   string
	expire  time.Time
}

// MachineCredentials are a watcher's login, as `cscli machines add -f FILE`
// writes them.
type MachineCredentials struct {
	URL      string
	Login    string
	Password string
}

// NewClient makes a client for the LAPI at baseURL (e.g.
// "http://127.0.0.1:8080/"). timeout bounds every request.
func NewClient(baseURL string, machine MachineCredentials, apiKey string, timeout time.Duration) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("crowdsec: local API URL %q is not http(s)://host:port/", baseURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Client{
		base:      u,
		http:      &http.Client{Timeout: timeout},
		userAgent: "sipsentry/dev",
		machine:   machine,
		apiKey:    apiKey,
	}, nil
}

// SetVersion sets the User-Agent to "sipsentry/<version>". The LAPI refuses
// a watcher login whose User-Agent is not of the form name/version (HTTP
// 401 "incorrect Username or Password", measured on 1.4.6).
func (c *Client) SetVersion(version string) {
	v := strings.Map(func(r rune) rune {
		if r <= ' ' || r == '/' || r > '~' {
			return -1
		}
		return r
	}, version)
	if v == "" {
		v = "dev"
	}
	c.userAgent = "sipsentry/" + v
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, body any, auth func(*http.Request) error, out any) error {
	u := *c.base
	u.Path += strings.TrimPrefix(path, "/")
	if query != nil {
		u.RawQuery = query.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("crowdsec: encode %s: %w", path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return fmt.Errorf("crowdsec: %w", err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != nil {
		if err := auth(req); err != nil {
			return err
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: %s %s: %v", ErrUnreachable, method, path, err)
	}
	defer resp.Body.Close()
	lr := io.LimitReader(resp.Body, maxResponseBytes+1)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(lr, 512))
		return &HTTPError{Method: method, Path: path, Status: resp.StatusCode, Body: strings.TrimSpace(string(b))}
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, lr)
		return nil
	}
	b, err := io.ReadAll(lr)
	if err != nil {
		return fmt.Errorf("%w: %s %s: reading the answer: %v", ErrUnreachable, method, path, err)
	}
	if len(b) > maxResponseBytes {
		return fmt.Errorf("crowdsec: %s %s: answer larger than %d bytes", method, path, maxResponseBytes)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("crowdsec: %s %s: undecodable answer: %w", method, path, err)
	}
	return nil
}

// Decision is one LAPI decision as the stream returns it.
type Decision struct {
	ID       int64  `json:"id"`
	Origin   string `json:"origin"`
	Type     string `json:"type"`
	Scope    string `json:"scope"`
	Value    string `json:"value"`
	Duration string `json:"duration"`
	Scenario string `json:"scenario"`
}

// Stream is one answer of /v1/decisions/stream.
type Stream struct {
	New     []Decision `json:"new"`
	Deleted []Decision `json:"deleted"`
}

// DecisionsStream pulls the decisions added and deleted since this bouncer's
// last pull (all current ones with startup). Needs the bouncer API key.
func (c *Client) DecisionsStream(ctx context.Context, startup bool) (Stream, error) {
	if c.apiKey == "" {
		return Stream{}, errors.New("crowdsec: no bouncer API key configured (crowdsec.bouncer_key_file)")
	}
	q := url.Values{"startup": {fmt.Sprint(startup)}}
	var s Stream
	err := c.do(ctx, http.MethodGet, "v1/decisions/stream", q, nil, func(r *http.Request) error {
		r.Header.Set("X-Api-Key", c.apiKey)
		return nil
	}, &s)
	return s, err
}

// CheckBouncer proves the bouncer key with a live query (GET /v1/decisions
// for 127.0.0.1) instead of the stream, so it never moves the stream's
// "since" mark under a running daemon (the LAPI moves it on a live query
// only when the last pull is over a minute old, and the daemon pulls far
// more often).
func (c *Client) CheckBouncer(ctx context.Context) error {
	if c.apiKey == "" {
		return errors.New("crowdsec: no bouncer API key configured (crowdsec.bouncer_key_file)")
	}
	var ignored any
	return c.do(ctx, http.MethodGet, "v1/decisions", url.Values{"ip": {"127.0.0.1"}}, nil, func(r *http.Request) error {
		r.Header.Set("X-Api-Key", c.apiKey)
		return nil
	}, &ignored)
}

type loginAnswer struct {
	Code   int    `json:"code"`
	Expire string `json:"expire"`
	Token  string `json:"token"`
}

// Login gets a fresh watcher token (machine credentials).
func (c *Client) Login(ctx context.Context) error {
	if c.machine.Login == "" {
		return errors.New("crowdsec: no machine credentials configured (crowdsec.machine_credentials_file)")
	}
	var a loginAnswer
	err := c.do(ctx, http.MethodPost, "v1/watchers/login", nil, map[string]any{
		"machine_id": c.machine.Login,
		"password":   c.machine.Password,
	}, nil, &a)
	if err != nil {
		return err
	}
	if a.Token == "" {
		return errors.New("crowdsec: login answered without a token")
	}
	exp, err := time.Parse(time.RFC3339, a.Expire)
	if err != nil {
		exp = time.Now().Add(30 * time.Minute)
	}
	c.tokenMu.Lock()
	c.token, c.expire = a.Token, exp
	c.tokenMu.Unlock()
	return nil
}

// bearer adds the watcher token, logging in first when there is none or it
// expires within a minute.
func (c *Client) bearer(ctx context.Context) func(*http.Request) error {
	return func(r *http.Request) error {
		c.tokenMu.Lock()
		tok, exp := c.token, c.expire
		c.tokenMu.Unlock()
		if tok == "" || time.Until(exp) < time.Minute {
			if err := c.Login(ctx); err != nil {
				return err
			}
			c.tokenMu.Lock()
			tok = c.token
			c.tokenMu.Unlock()
		}
		r.Header.Set("Authorization", "Bearer "+tok)
		return nil
	}
}

func (c *Client) dropToken() {
	c.tokenMu.Lock()
	c.token = ""
	c.tokenMu.Unlock()
}

// PostAlerts sends alerts (with their decisions) as the machine. A refused
// token is renewed once.
func (c *Client) PostAlerts(ctx context.Context, alerts []Alert) error {
	err := c.do(ctx, http.MethodPost, "v1/alerts", nil, alerts, c.bearer(ctx), nil)
	if errors.Is(err, ErrUnauthorized) {
		c.dropToken()
		err = c.do(ctx, http.MethodPost, "v1/alerts", nil, alerts, c.bearer(ctx), nil)
	}
	return err
}

// Health asks /health (no credentials); it also returns the LAPI's clock
// from the Date header, for the doctor's skew check.
func (c *Client) Health(ctx context.Context) (time.Time, error) {
	u := *c.base
	u.Path += "health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return time.Time{}, &HTTPError{Method: "GET", Path: "health", Status: resp.StatusCode}
	}
	d, _ := http.ParseTime(resp.Header.Get("Date"))
	return d, nil
}
