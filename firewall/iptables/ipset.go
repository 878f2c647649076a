package iptables

import (
	"bufio"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
)

// setSpec is what one kernel set must look like to be sipsentry's.
type setSpec struct {
	set     firewall.Set
	name    string
	typ     string // hash:net | hash:ip
	family  string // inet | inet6
	timeout bool
	comment bool
	maxElem int
}

// createLine is the `ipset restore` line that creates name with spec's
// type and options, its hash sized for n entries.
func (s setSpec) createLine(name string, n, maxElem int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "create %s %s family %s hashsize %d maxelem %d", name, s.typ, s.family, hashSize(n), maxElem)
	if s.timeout {
		b.WriteString(" timeout 0")
	}
	if s.comment {
		b.WriteString(" comment")
	}
	b.WriteByte('\n')
	return b.String()
}

// hashSize gives the kernel enough buckets for n entries up front, so a
// bulk load never pays for rehashing (it halves the load time of a
// country list); 1024 is ipset's default and minimum worth asking.
func hashSize(n int) int {
	h := 1024
	for h < n && h < 1<<24 {
		h <<= 1
	}
	return h
}

// addLine is the `ipset restore` line adding e to name.
func addLine(b *strings.Builder, verb, name string, s setSpec, e firewall.Entry) {
	b.WriteString(verb)
	b.WriteByte(' ')
	b.WriteString(name)
	b.WriteByte(' ')
	if s.typ == "hash:ip" {
		b.WriteString(e.Prefix.Addr().String())
	} else {
		b.WriteString(e.Prefix.String())
	}
	if verb == "add" {
		if s.timeout && e.Timeout > 0 {
			b.WriteString(" timeout ")
			b.WriteString(strconv.FormatUint(uint64(timeoutSeconds(e.Timeout)), 10))
		}
		if s.comment && e.Comment != "" {
			b.WriteString(` comment "`)
			b.WriteString(e.Comment) // firewall.Validate removed quotes and control characters
			b.WriteByte('"')
		}
	}
	b.WriteByte('\n')
}

// timeoutSeconds rounds a positive timeout up to whole seconds (ipset's
// unit) so that a short timeout never turns into 0, which means forever.
func timeoutSeconds(d time.Duration) uint32 {
	s := (d + time.Second - 1) / time.Second
	const max = 2147483 // the kernel's limit (UINT_MAX/1000)
	if s > max {
		s = max
	}
	if s < 1 {
		s = 1
	}
	return uint32(s)
}

// setHeader is one set as `ipset list -t` describes it.
type setHeader struct {
	Name     string
	Type     string
	Family   string
	Timeout  bool
	Comment  bool
	MaxElem  int
	Entries  int
	Memory   int
	Refs     int
	Revision int
}

// parseListTerse parses the output of `ipset list -t` (all sets).
func parseListTerse(out string) (map[string]setHeader, error) {
	sets := map[string]setHeader{}
	var cur *setHeader
	flush := func() {
		if cur != nil {
			sets[cur.Name] = *cur
			cur = nil
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Name":
			flush()
			cur = &setHeader{Name: val}
		case "Type":
			if cur != nil {
				cur.Type = val
			}
		case "Revision":
			if cur != nil {
				cur.Revision, _ = strconv.Atoi(val)
			}
		case "Header":
			if cur == nil {
				continue
			}
			f := strings.Fields(val)
			for i := 0; i < len(f); i++ {
				switch f[i] {
				case "family":
					if i+1 < len(f) {
						cur.Family = f[i+1]
					}
				case "maxelem":
					if i+1 < len(f) {
						cur.MaxElem, _ = strconv.Atoi(f[i+1])
					}
				case "timeout":
					cur.Timeout = true
				case "comment":
					cur.Comment = true
				}
			}
		case "Size in memory":
			if cur != nil {
				cur.Memory, _ = strconv.Atoi(val)
			}
		case "References":
			if cur != nil {
				cur.Refs, _ = strconv.Atoi(val)
			}
		case "Number of entries":
			if cur != nil {
				cur.Entries, _ = strconv.Atoi(val)
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("iptables: reading ipset list: %w", err)
	}
	return sets, nil
}

// matches tells whether an existing set has the type and options sipsentry
// would have given it; maxelem is not compared (Replace grows it).
func (h setHeader) matches(s setSpec) error {
	var diff []string
	if h.Type != s.typ {
		diff = append(diff, fmt.Sprintf("type %s, want %s", h.Type, s.typ))
	}
	if h.Family != s.family {
		diff = append(diff, fmt.Sprintf("family %s, want %s", h.Family, s.family))
	}
	if h.Timeout != s.timeout {
		diff = append(diff, fmt.Sprintf("timeout support %v, want %v", h.Timeout, s.timeout))
	}
	if h.Comment != s.comment {
		diff = append(diff, fmt.Sprintf("comment support %v, want %v", h.Comment, s.comment))
	}
	if len(diff) == 0 {
		return nil
	}
	return fmt.Errorf("%w: ipset %q has %s; rename or destroy it (ipset destroy %s) or set another name",
		firewall.ErrNotOurs, h.Name, strings.Join(diff, ", "), h.Name)
}

// parseSave parses `ipset save NAME` into entries. Permanent entries (no
// timeout or "timeout 0") get Timeout 0.
func parseSave(out, name string) ([]firewall.Entry, error) {
	var es []firewall.Entry
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "add "+name+" ")
		if !ok {
			continue
		}
		var e firewall.Entry
		member, opts, _ := strings.Cut(rest, " ")
		p, err := parseMember(member)
		if err != nil {
			return nil, fmt.Errorf("iptables: ipset save %s: %q: %w", name, line, err)
		}
		e.Prefix = p
		for opts != "" {
			var key string
			key, opts, _ = strings.Cut(opts, " ")
			switch key {
			case "timeout":
				var v string
				v, opts, _ = strings.Cut(opts, " ")
				n, err := strconv.ParseUint(v, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("iptables: ipset save %s: bad timeout in %q", name, line)
				}
				e.Timeout = time.Duration(n) * time.Second
			case "comment":
				// The comment is last on the line and quoted.
				c := strings.TrimSpace(opts)
				c = strings.TrimPrefix(c, `"`)
				c = strings.TrimSuffix(c, `"`)
				e.Comment = c
				opts = ""
			}
		}
		es = append(es, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("iptables: reading ipset save: %w", err)
	}
	return es, nil
}

func parseMember(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
