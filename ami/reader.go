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
	// un-interned key of the current message (line-by-line path only), and
	// where each header's key/value lies. Per returned message one string
	// is allocated, plus a share of a []Header slab; interned keys
	// allocate nothing.
	buf   []byte
	spans []span
	slab  []Header // see build
}

const slabHeaders = 128

type span struct {
	key        uint8 // index in internedKeys, or 0 when the key is in buf
	kOff, kEnd int32
	vOff, vEnd int32
}

// NewReader returns a Reader on r with the caps in o.
func NewReader(r io.Reader, o ReaderOptions) *Reader {
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = DefaultMaxLineBytes
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	// Offsets into the scratch buffer are int32; nothing near 1 GiB is sane.
	o.MaxLineBytes = min(o.MaxLineBytes, 1<<30)
	o.MaxMessageBytes = min(o.MaxMessageBytes, 1<<30)
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
	if m, ok, done, err := r.readBuffered(); done || err != nil {
		return m, ok, err
	}
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
			oversized = oversized || !malformed // the first problem names the skip
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
			return r.messageFrom(string(r.buf), r.spans), true, nil // one copy of the values
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

// readBuffered is the fast path: when a whole message (up to its blank
// line) is already in the bufio buffer, it is parsed in place and copied
// once, instead of line by line. done is false, with nothing consumed,
// when the buffer does not hold a complete message; readOne then takes the
// line-by-line path, which owns every error and EOF inside a message.
func (r *Reader) readBuffered() (m Message, ok, done bool, err error) {
	n := r.br.Buffered()
	if n == 0 {
		// Nothing buffered: we are at a message boundary, so an error here
		// (io.EOF included) ends the stream cleanly. Peek consumes the
		// error, so it must be returned now, not left to the slow path.
		if _, err := r.br.Peek(1); err != nil {
			return Message{}, false, false, err
		}
		n = r.br.Buffered()
	}
	buf, _ := r.br.Peek(n)
	spans := r.spans[:0] // a local: appends through r would reload it each time
	defer func() { r.spans = spans }()
	size, start := 0, 0
	started, malformed, oversized := false, false, false
	for pos := 0; ; {
		i := bytes.IndexByte(buf[pos:], '\n')
		if i < 0 {
			return Message{}, false, false, nil
		}
		line, next := buf[pos:pos+i], pos+i+1
		if k := len(line); k > 0 && line[k-1] == '\r' {
			line = line[:k-1]
		}
		if len(line) == 0 {
			if !started {
				pos, start = next, next // blank lines between messages
				continue
			}
			switch {
			case oversized:
				r.stats.Oversized++
			case malformed:
				r.stats.Malformed++
			default:
				// One copy of the whole message (keys and line ends too:
				// cheaper than copying ~12 values one by one).
				m, ok = r.messageFrom(string(buf[start:next]), spans), true
			}
			if _, err := r.br.Discard(next); err != nil {
				panic("ami: discarding peeked bytes failed: " + err.Error()) // cannot happen: next <= Buffered()
			}
			return m, ok, true, nil
		}
		started = true
		pos = next
		if malformed || oversized {
			continue
		}
		size += len(line) + 2
		if len(line) > r.maxLn || size > r.maxMsg {
			oversized = true
			continue
		}
		lineOff := next - i - 1 - start
		kl, vo, id, hok := splitHeader(line)
		if !hok {
			malformed = true
			continue
		}
		s := span{key: id}
		if id == 0 {
			s.kOff, s.kEnd = int32(lineOff), int32(lineOff+kl)
		}
		s.vOff, s.vEnd = int32(lineOff+vo), int32(lineOff+len(line))
		spans = append(spans, s)
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

// splitHeader finds where line splits into key and value: at the first
// ": ", or before a trailing ':' ("Key:" has an empty value). It returns
// the key's length, the value's offset and the key's interned id (see
// internKey); ok is false for a line that is not a header.
func splitHeader(line []byte) (keyLen, valOff int, id uint8, ok bool) {
	// A key normally ends at the first ':', so try that before searching on.
	i := bytes.IndexByte(line, ':')
	for i >= 0 && i+1 < len(line) && line[i+1] != ' ' {
		j := bytes.IndexByte(line[i+1:], ':')
		if j < 0 {
			return 0, 0, 0, false
		}
		i += 1 + j
	}
	if i < 0 {
		return 0, 0, 0, false
	}
	// Interned keys are valid by construction; check only the others.
	if id = internKey(line[:i]); id == 0 && !validKey(line[:i]) {
		return 0, 0, 0, false
	}
	if i+1 == len(line) {
		return i, len(line), id, true
	}
	return i, i + 2, id, true
}

// addHeader records line, copying its key (unless interned) and value into
// the scratch buffer. It reports false for a line that is not a header.
func (r *Reader) addHeader(line []byte) bool {
	kl, vo, id, ok := splitHeader(line)
	if !ok {
		return false
	}
	s := span{key: id}
	if s.key == 0 {
		s.kOff = int32(len(r.buf))
		r.buf = append(r.buf, line[:kl]...)
		s.kEnd = int32(len(r.buf))
	}
	s.vOff = int32(len(r.buf))
	r.buf = append(r.buf, line[vo:]...)
	s.vEnd = int32(len(r.buf))
	r.spans = append(r.spans, s)
	return true
}

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

// messageFrom makes the headers of a message whose keys (unless interned)
// and values lie in all at the offsets in spans.
func (r *Reader) messageFrom(all string, spans []span) Message {
	// Headers of consecutive messages share a slab, cut with cap == len so
	// that a caller's append reallocates instead of writing into the next
	// message. A retained message pins at most one slab (4 KiB).
	n := len(spans)
	if cap(r.slab)-len(r.slab) < n {
		r.slab = make([]Header, 0, max(slabHeaders, n))
	}
	hs := r.slab[len(r.slab) : len(r.slab)+n : len(r.slab)+n]
	r.slab = r.slab[:len(r.slab)+n]
	for i, sp := range spans {
		k := internedKeys[sp.key]
		if sp.key == 0 {
			k = all[sp.kOff:sp.kEnd]
		}
		hs[i] = Header{Key: k, Value: all[sp.vOff:sp.vEnd]}
	}
	return Message{Headers: hs}
}

// internKey returns the index in internedKeys of the keys Asterisk sends
// most, so that they cost no allocation, or 0 for any other key. The switch
// on string(b) does not allocate; an index instead of a string keeps the
// scratch spans pointer-free (no GC write barriers on the hot path).
func internKey(b []byte) uint8 {
	switch string(b) {
	case "Event":
		return 1
	case "Privilege":
		return 2
	case "SystemName":
		return 3
	case "EventTV":
		return 4
	case "Severity":
		return 5
	case "Service":
		return 6
	case "EventVersion":
		return 7
	case "AccountID":
		return 8
	case "SessionID":
		return 9
	case "SessionTV":
		return 10
	case "LocalAddress":
		return 11
	case "RemoteAddress":
		return 12
	case "Challenge":
		return 13
	case "Response":
		return 14
	case "ExpectedResponse":
		return 15
	case "ReceivedChallenge":
		return 16
	case "ReceivedHash":
		return 17
	case "UsingPassword":
		return 18
	case "ACLName":
		return 19
	case "Module":
		return 20
	case "RequestType":
		return 21
	case "RequestParams":
		return 22
	case "ActionID":
		return 23
	case "Message":
		return 24
	case "EventList":
		return 25
	case "ListItems":
		return 26
	case "Timestamp":
		return 27
	case "Ping":
		return 28
	case "Uptime":
		return 29
	case "LastReload":
		return 30
	case "Status":
		return 31
	case "URI":
		return 32
	case "ContactStatus":
		return 33
	case "AOR":
		return 34
	case "EndpointName":
		return 35
	case "RoundtripUsec":
		return 36
	case "ChannelType":
		return 37
	case "Peer":
		return 38
	case "PeerStatus":
		return 39
	case "Device":
		return 40
	case "State":
		return 41
	case "ObjectType":
		return 42
	case "ObjectName":
		return 43
	case "ViaAddr":
		return 44
	case "ViaPort":
		return 45
	case "CallId":
		return 46
	case "RegServer":
		return 47
	case "Endpoint":
		return 48
	case "Uri":
		return 49
	case "UserAgent":
		return 50
	case "ExpirationTime":
		return 51
	}
	return 0
}

var internedKeys = [...]string{"", "Event", "Privilege", "SystemName", "EventTV", "Severity", "Service", "EventVersion", "AccountID", "SessionID", "SessionTV", "LocalAddress", "RemoteAddress", "Challenge", "Response", "ExpectedResponse", "ReceivedChallenge", "ReceivedHash", "UsingPassword", "ACLName", "Module", "RequestType", "RequestParams", "ActionID", "Message", "EventList", "ListItems", "Timestamp", "Ping", "Uptime", "LastReload", "Status", "URI", "ContactStatus", "AOR", "EndpointName", "RoundtripUsec", "ChannelType", "Peer", "PeerStatus", "Device", "State", "ObjectType", "ObjectName", "ViaAddr", "ViaPort", "CallId", "RegServer", "Endpoint", "Uri", "UserAgent", "ExpirationTime"}

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
