package ami

import (
	"strings"
	"time"
)

// Header is one "Key: Value" line, split at the first ": ".
type Header struct {
	Key   string
	Value string
}

// Message is one AMI message: headers in wire order, repeated keys kept.
type Message struct {
	Headers []Header
	// Received is when a Client read the message off its socket, before it
	// waited in the event queue: the start of the socket → kernel latency.
	// Zero for messages that did not come through a Client.
	Received time.Time
}

// Get returns the first value of key (case-insensitive), or "".
func (m *Message) Get(key string) string {
	for _, h := range m.Headers {
		if equalFold(h.Key, key) {
			return h.Value
		}
	}
	return ""
}

// Last returns the last value of key, or "".
func (m *Message) Last(key string) string {
	for i := len(m.Headers) - 1; i >= 0; i-- {
		if equalFold(m.Headers[i].Key, key) {
			return m.Headers[i].Value
		}
	}
	return ""
}

// Values returns every value of key in order.
func (m *Message) Values(key string) []string {
	var out []string
	for _, h := range m.Headers {
		if equalFold(h.Key, key) {
			out = append(out, h.Value)
		}
	}
	return out
}

// Has reports whether key is present.
func (m *Message) Has(key string) bool {
	for _, h := range m.Headers {
		if equalFold(h.Key, key) {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }
