package ami

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The codec. Everything on the wire comes from Asterisk, but Asterisk writes
// attacker-controlled values (From user, Call-ID, digest fields) into its
// events without escaping them, so every byte read here is treated as
// hostile: no size from the peer is trusted, a line never grows memory past
// MaxLineBytes, a message never past MaxMessageBytes, and a malformed
// message is skipped to its blank line instead of ending the stream.
//
// Wire format: a banner line "Asterisk Call Manager/X.Y.Z", then messages
// of "Key: Value" lines closed by an empty line. A header is split at the
// FIRST ": " only (values hold colons: EventTV, IPv6 addresses, sip: URIs,
// "RequestType: Action: Originate"); "Key:" alone is a key with an empty
// value. Lines end in CRLF or a bare LF.

const (
	// DefaultMaxLineBytes is the default cap on one line, without its end.
	DefaultMaxLineBytes = 8 << 10
	// DefaultMaxMessageBytes is the default cap on one message's lines.
	DefaultMaxMessageBytes = 64 << 10
	bannerPrefix           = "Asterisk Call Manager/"
)

// ReaderOptions caps what one line and one message may take. Zero values
// mean the defaults (8 KiB, 64 KiB).
type ReaderOptions struct {
	MaxLineBytes    int
	MaxMessageBytes int
}

// ReaderStats counts what the Reader saw. Malformed and Oversized messages
// were skipped, not returned.
type ReaderStats struct {
	Messages  uint64 // messages returned by ReadMessage
	Malformed uint64 // messages skipped: a line that is not "Key: Value"
	Oversized uint64 // messages skipped: a line or the message over its cap
}

// ErrBanner is returned by ReadBanner when the first line is not an AMI
// banner: the address is probably not an Asterisk manager port.
var ErrBanner = errors.New("ami: no \"Asterisk Call Manager/\" banner; check that the address is Asterisk's AMI port (manager.conf bindaddr/port)")

// Reader reads AMI messages from a byte stream. It is not safe for
// concurrent use; one goroutine owns it. An error other than a skipped
// message is sticky: after it the Reader returns the same error.
type Reader struct {
	br     *bufio.Reader
	maxLn  int
	maxMsg int
	stats  ReaderStats
	err    error

	// Scratch reused across messages: the bytes of every value and
	// un-interned key of the current message, and where each header's
	// key/value lies in it. One string and one []Header are allocated per
	// returned message; interned keys allocate nothing.
	buf   []byte
	spans []span
}

type span struct {
	key        string // interned key, or "" when the key is in buf
	kOff, kEnd int
	vOff, vEnd int
}

// NewReader returns a Reader on r with the caps in o.
func NewReader(r io.Reader, o ReaderOptions) *Reader {
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.MaxMessageBytes < o.MaxLineBytes {
		o.MaxMessageBytes = o.MaxLineBytes
	}
	// The buffer holds one whole line plus its CRLF, so ReadSlice either
	// returns a complete line or reports it over-long.
	return &Reader{
		br:     bufio.NewReaderSize(r, o.MaxLineBytes+2),
		maxLn:  o.MaxLineBytes,
		maxMsg: o.MaxMessageBytes,
		buf:    make([]byte, 0, 1024),
		spans:  make([]span, 0, 32),
	}
}

// Stats returns the counters so far.
func (r *Reader) Stats() ReaderStats { return r.stats }

// ReadBanner reads the first line and returns it, e.g.
// "Asterisk Call Manager/11.0.0". A first line that is not an AMI banner
// gives an error wrapping ErrBanner.
func (r *Reader) ReadBanner() (string, error) {
	if r.err != nil {
		return "", r.err
	}
	line, over, err := r.readLine()
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		r.err = fmt.Errorf("ami: reading banner: %w", err)
		return "", r.err
	}
	if over || !bytes.HasPrefix(line, []byte(bannerPrefix)) {
		if len(line) > 64 {
			line = line[:64]
		}
		return "", fmt.Errorf("%w (got %q)", ErrBanner, line)
	}
	return string(line), nil
}

// ReadMessage returns the next well-formed message. Malformed and
// over-long messages are skipped and counted (see Stats). It returns io.EOF
// when the stream ends at a message boundary and io.ErrUnexpectedEOF when
// it ends inside a message (that partial message is dropped). Empty lines
// between messages are ignored.
func (r *Reader) ReadMessage() (Message, error) {
	if r.err != nil {
		return Message{}, r.err
	}
	for {
		m, ok, err := r.readOne()
		if err != nil {
			r.err = err
			return Message{}, err
		}
		if ok {
			r.stats.Messages++
			return m, nil
		}
	}
}

// readOne reads up to and including the next blank line that ends a
// non-empty message. ok is false when that message was skipped.
func (r *Reader) readOne() (m Message, ok bool, err error) {
	r.buf = r.buf[:0]
	r.spans = r.spans[:0]
	size := 0
	malformed, oversized := false, false
	for {
		line, over, err := r.readLine()
		if err != nil {
			if err == io.EOF && (len(r.spans) > 0 || malformed || oversized || len(line) > 0) {
				// A message cut off by the end of the stream. The peer may
				// have died mid-write; drop what we have.
				return Message{}, false, io.ErrUnexpectedEOF
			}
			return Message{}, false, err
		}
		if over {
			oversized = true
			continue
		}
		if len(line) == 0 {
			if len(r.spans) == 0 && !malformed && !oversized {
				continue // blank lines between messages
			}
			switch {
			case oversized:
				r.stats.Oversized++
				return Message{}, false, nil
			case malformed:
				r.stats.Malformed++
				return Message{}, false, nil
			}
			return r.build(), true, nil
		}
		if malformed || oversized {
			continue // skipping to the blank line
		}
		size += len(line) + 2
		if size > r.maxMsg {
			oversized = true
			continue
		}
		if !r.addHeader(line) {
			malformed = true
		}
	}
}

// readLine returns the next line without its CRLF or LF. over is true when
// the line exceeded the cap; it has then been discarded to its end, so the
// memory held is bounded by the bufio buffer. The returned slice is valid
// until the next read.
func (r *Reader) readLine() (line []byte, over bool, err error) {
	line, err = r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		for err == bufio.ErrBufferFull {
			_, err = r.br.ReadSlice('\n')
		}
		if err != nil {
			return nil, true, err
		}
		return nil, true, nil
	}
	if err != nil {
		// EOF (or a read error) inside a line: hand back what there is so
		// the caller can tell a cut message from a clean end.
		return line, false, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > r.maxLn {
		return nil, true, nil
	}
	return line, false, nil
}

// addHeader splits line at the first ": " (or a trailing ':') and records
// it. It reports false for a line that is not a header.
func (r *Reader) addHeader(line []byte) bool {
	var key, val []byte
	if i := bytes.Index(line, colonSpace); i >= 0 {
		key, val = line[:i], line[i+2:]
	} else if n := len(line); line[n-1] == ':' {
		key = line[:n-1]
	} else {
		return false
	}
	if !validKey(key) {
		return false
	}
	s := span{key: internKey(key)}
	if s.key == "" {
		s.kOff = len(r.buf)
		r.buf = append(r.buf, key...)
		s.kEnd = len(r.buf)
	}
	s.vOff = len(r.buf)
	r.buf = append(r.buf, val...)
	s.vEnd = len(r.buf)
	r.spans = append(r.spans, s)
	return true
}

var colonSpace = []byte(": ")

// validKey rejects empty keys and keys holding whitespace or control bytes:
// no AMI key has them, and a key like " RemoteAddress" (a folded line)
// must never pass for a header.
func validKey[T string | []byte](k T) bool {
	if len(k) == 0 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

func (r *Reader) build() Message {
	all := string(r.buf) // the one allocation for every value of the message
	hs := make([]Header, len(r.spans))
	for i, s := range r.spans {
		k := s.key
		if k == "" {
			k = all[s.kOff:s.kEnd]
		}
		hs[i] = Header{Key: k, Value: all[s.vOff:s.vEnd]}
	}
	return Message{Headers: hs}
}

// internKey returns a constant string for the keys Asterisk sends most, so
// that they cost no allocation; "" for any other key. The switch on
// string(b) does not allocate.
func internKey(b []byte) string {
	switch string(b) {
	case "Event":
		return "Event"
	case "Privilege":
		return "Privilege"
	case "SystemName":
		return "SystemName"
	case "EventTV":
		return "EventTV"
	case "Severity":
		return "Severity"
	case "Service":
		return "Service"
	case "EventVersion":
		return "EventVersion"
	case "AccountID":
		return "AccountID"
	case "SessionID":
		return "SessionID"
	case "SessionTV":
		return "SessionTV"
	case "LocalAddress":
		return "LocalAddress"
	case "RemoteAddress":
		return "RemoteAddress"
	case "Challenge":
		return "Challenge"
	case "Response":
		return "Response"
	case "ExpectedResponse":
		return "ExpectedResponse"
	case "ReceivedChallenge":
		return "ReceivedChallenge"
	case "ReceivedHash":
		return "ReceivedHash"
	case "UsingPassword":
		return "UsingPassword"
	case "ACLName":
		return "ACLName"
	case "Module":
		return "Module"
	case "RequestType":
		return "RequestType"
	case "RequestParams":
		return "RequestParams"
	case "ActionID":
		return "ActionID"
	case "Message":
		return "Message"
	case "EventList":
		return "EventList"
	case "ListItems":
		return "ListItems"
	case "Timestamp":
		return "Timestamp"
	case "Ping":
		return "Ping"
	case "Uptime":
		return "Uptime"
	case "LastReload":
		return "LastReload"
	case "Status":
		return "Status"
	case "URI":
		return "URI"
	case "ContactStatus":
		return "ContactStatus"
	case "AOR":
		return "AOR"
	case "EndpointName":
		return "EndpointName"
	case "RoundtripUsec":
		return "RoundtripUsec"
	case "ChannelType":
		return "ChannelType"
	case "Peer":
		return "Peer"
	case "PeerStatus":
		return "PeerStatus"
	case "Device":
		return "Device"
	case "State":
		return "State"
	case "ObjectType":
		return "ObjectType"
	case "ObjectName":
		return "ObjectName"
	case "ViaAddr":
		return "ViaAddr"
	case "ViaPort":
		return "ViaPort"
	case "CallId":
		return "CallId"
	case "RegServer":
		return "RegServer"
	case "Endpoint":
		return "Endpoint"
	case "Uri":
		return "Uri"
	case "UserAgent":
		return "UserAgent"
	case "ExpirationTime":
		return "ExpirationTime"
	}
	return ""
}

// WriteMessage writes m as one AMI message (CRLF line ends, closing blank
// line) in a single Write. It refuses, writing nothing, a key that is empty
// or holds ':' or whitespace, and a key or value holding CR or LF: such a
// message would be read back as different headers (header injection).
func WriteMessage(w io.Writer, m Message) error {
	n := 2
	for _, h := range m.Headers {
		if !validKey(h.Key) || strings.IndexByte(h.Key, ':') >= 0 {
			return fmt.Errorf("ami: refusing to write header key %q: keys must be non-empty, without ':', spaces or control bytes", h.Key)
		}
		if strings.ContainsAny(h.Value, "\r\n") {
			return fmt.Errorf("ami: refusing to write %s: value holds CR or LF (would inject headers)", h.Key)
		}
		n += len(h.Key) + len(h.Value) + 4
	}
	b := make([]byte, 0, n)
	for _, h := range m.Headers {
		b = append(b, h.Key...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	_, err := w.Write(b)
	if err != nil {
		return fmt.Errorf("ami: write: %w", err)
	}
	return nil
}
