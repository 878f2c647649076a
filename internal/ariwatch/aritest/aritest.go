// Package aritest is a small fake Asterisk REST Interface for tests: the
// channel list, CHANNEL(pjsip,remote_addr) reads, channel hang-ups, the
// asterisk info document, and an event websocket that sends whatever the test
// pushes (e.g. the recorded ari-events.jsonl lines).
//
// It listens on loopback only and must never stand in for a real PBX.
package aritest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/websocket"
)

// RemoteAddrVar is the only channel variable the fake answers.
const RemoteAddrVar = "CHANNEL(pjsip,remote_addr)"

// Channel is one live channel.
type Channel struct {
	ID, Name string
	// RemoteAddr is what CHANNEL(pjsip,remote_addr) returns ("203.0.113.5:5060").
	RemoteAddr string
}

// Options configure a Server.
type Options struct {
	Username, Password string // default "ari" / "ari-secret" (as recorded)
	// Listener, when set, is served instead of a new 127.0.0.1:0 listener
	// (e.g. one opened inside a network namespace).
	Listener net.Listener
	// Info is the GET /ari/asterisk/info body; default a minimal document.
	Info     []byte
	Channels []Channel
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	o   Options
	srv *httptest.Server

	mu       sync.Mutex
	channels []Channel
	varAsked []string
	hungUp   []string
	queries  []string
	authFail int
	conns    map[*websocket.Conn]chan []byte
}

// NewServer starts a server that is closed when t ends.
func NewServer(t testing.TB, o Options) *Server {
	t.Helper()
	s := Start(o)
	t.Cleanup(s.Close)
	return s
}

// Start starts a server; Close stops it.
func Start(o Options) *Server {
	if o.Username == "" {
		o.Username = "ari"
	}
	if o.Password == "" {
		o.Password = "ari-secret"
	}
	if o.Info == nil {
		o.Info = []byte(`{"system":{"version":"22.10.1","entity_id":"02:fc:00:00:00:01"}}`)
	}
	s := &Server{o: o, channels: slices.Clone(o.Channels), conns: map[*websocket.Conn]chan []byte{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ari/asterisk/info", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(s.o.Info)
	})
	mux.HandleFunc("GET /ari/channels", s.listChannels)
	mux.HandleFunc("GET /ari/channels/{id}/variable", s.getVariable)
	mux.HandleFunc("DELETE /ari/channels/{id}", s.hangup)
	mux.Handle("GET /ari/events", websocket.Server{Handler: s.events})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != s.o.Username || p != s.o.Password {
			s.mu.Lock()
			s.authFail++
			s.mu.Unlock()
			http.Error(w, `{"message":"Authentication required"}`, http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
	if o.Listener != nil {
		s.srv = httptest.NewUnstartedServer(h)
		s.srv.Listener.Close()
		s.srv.Listener = o.Listener
		s.srv.Start()
	} else {
		s.srv = httptest.NewServer(h)
	}
	return s
}

// URL is the REST root for ariwatch ("http://127.0.0.1:PORT/ari").
func (s *Server) URL() string { return s.srv.URL + "/ari" }

// Close stops the server and drops the websockets.
func (s *Server) Close() {
	s.Kick()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetChannels replaces the live channels.
func (s *Server) SetChannels(cs []Channel) {
	s.mu.Lock()
	s.channels = slices.Clone(cs)
	s.mu.Unlock()
}

// Channels returns the channels still up.
func (s *Server) Channels() []Channel {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.channels)
}

// HungUp returns the IDs of the channels hung up, in order.
func (s *Server) HungUp() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.hungUp)
}

// VariableReads returns the channel IDs whose remote_addr was read.
func (s *Server) VariableReads() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.varAsked)
}

// WebsocketQueries returns the query string of every websocket connection.
func (s *Server) WebsocketQueries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.queries)
}

// Connections is the number of websocket connections so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queries)
}

// AuthFailures counts requests refused for bad credentials.
func (s *Server) AuthFailures() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.authFail
}

// Send queues messages (JSON events) for every open websocket.
func (s *Server) Send(msgs ...[]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ch := range s.conns {
		for _, m := range msgs {
			ch <- m
		}
	}
}

// Kick closes every open websocket (Asterisk restarting).
func (s *Server) Kick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

func (s *Server) events(c *websocket.Conn) {
	ch := make(chan []byte, 1024)
	s.mu.Lock()
	s.conns[c] = ch
	s.queries = append(s.queries, c.Request().URL.RawQuery)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	closed := make(chan struct{})
	go func() { // notice the peer going away
		var b []byte
		for websocket.Message.Receive(c, &b) == nil {
		}
		close(closed)
	}()
	for {
		select {
		case m := <-ch:
			if err := websocket.Message.Send(c, string(m)); err != nil {
				return
			}
		case <-closed:
			return
		}
	}
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	type ch struct {
		ID    string `json:"id"`
		Name  string `json:"name"`
		State string `json:"state"`
	}
	out := []ch{}
	for _, c := range s.channels {
		out = append(out, ch{c.ID, c.Name, "Up"})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (s *Server) getVariable(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PathValue("id")
	s.varAsked = append(s.varAsked, id)
	if v := r.URL.Query().Get("variable"); v != RemoteAddrVar {
		http.Error(w, fmt.Sprintf(`{"message":"unexpected variable %q"}`, v), http.StatusBadRequest)
		return
	}
	for _, c := range s.channels {
		if c.ID != id {
			continue
		}
		if !strings.HasPrefix(c.Name, "PJSIP/") {
			// What Asterisk answers for CHANNEL(pjsip,...) on another technology.
			http.Error(w, `{"message":"Provided variable was not found"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"value": c.RemoteAddr})
		return
	}
	http.Error(w, `{"message":"Channel not found"}`, http.StatusNotFound)
}

func (s *Server) hangup(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PathValue("id")
	for i, c := range s.channels {
		if c.ID == id {
			s.channels = slices.Delete(s.channels, i, i+1)
			s.hungUp = append(s.hungUp, id)
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	http.Error(w, `{"message":"Channel not found"}`, http.StatusNotFound)
}
