package firewall

import "fmt"

// Mode is what the rules do with what the sets match.
type Mode string

const (
	// ModeMonitor drops nothing: would-be drops are logged and counted.
	ModeMonitor Mode = "monitor"
	// ModeEnforce drops banned sources (and, with GeoDrop, sources outside
	// the allowed countries).
	ModeEnforce Mode = "enforce"
)

// PortRange is a range of destination ports, From <= To; a single port has
// From == To.
type PortRange struct{ From, To uint16 }

func (r PortRange) String() string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}
