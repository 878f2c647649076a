package config

import (
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// checkDocument walks the TOML document once, before it is decoded, and
// reports every key that is not a setting and every value of the wrong type
// — all of them, each with its line and in words ("want a whole number, got
// the string \"five\""), where the decoder would stop at the first with Go
// type names. A syntax error stops the walk (nothing after it can be read).
func checkDocument(path string, data []byte) Errors {
	var errs Errors
	p := unstable.Parser{}
	p.Reset(data)
	var table []string
	tableBad := false // keys under an unknown table are reported with the table, once
	line := func(n *unstable.Node) int {
		if n == nil || n.Raw.Length == 0 && n.Raw.Offset == 0 {
			return 0
		}
		return p.Shape(n.Raw).Start.Line
	}
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table:
			table = keyParts(e.Key())
			tableBad = false
			if msg := checkTable(table); msg != "" {
				tableBad = true
				errs = append(errs, &Error{File: path, Line: line(firstKey(e)), Key: strings.Join(table, "."), Msg: msg})
			}
		case unstable.ArrayTable:
			table = keyParts(e.Key())
			tableBad = true
			errs = append(errs, &Error{File: path, Line: line(firstKey(e)), Key: strings.Join(table, "."),
				Msg: "[[...]] (an array of tables) is not used by sipsentry: write [" + strings.Join(table, ".") + "]"})
		case unstable.KeyValue:
			if tableBad {
				continue
			}
			key := append(slices.Clone(table), keyParts(e.Key())...)
			errs = append(errs, checkKeyValue(path, line(firstKey(e)), key, e.Value())...)
		}
	}
	if err := p.Error(); err != nil {
		errs = append(errs, syntaxError(path, data, err))
	}
	return errs
}

// firstKey is the first key node of a table header or key/value: its line
// is the line to report.
func firstKey(e *unstable.Node) *unstable.Node {
	it := e.Key()
	if it.Next() {
		return it.Node()
	}
	return nil
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// syntaxError names the line of a parse error.
func syntaxError(path string, data []byte, err error) *Error {
	e := &Error{File: path, Msg: "syntax error: " + err.Error()}
	if !strings.Contains(err.Error(), "quot") {
		e.Msg += ` (each line is key = value; a string needs quotes)`
	}
	if pe, ok := err.(*unstable.ParserError); ok && len(pe.Highlight) > 0 {
		// Highlight is a subslice of data: its offset gives the line.
		for i := range data {
			if &data[i] == &pe.Highlight[0] {
				e.Line = 1 + strings.Count(string(data[:i]), "\n")
				break
			}
		}
	}
	return e
}

var configType = reflect.TypeFor[Config]()

// fieldByKey finds the struct field for one TOML key of t.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == key && name != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// keysOf lists the TOML keys of a struct type.
func keysOf(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// resolve follows a dotted key from Config; it returns the type of the
// last element, or the index of the first part that is unknown.
func resolve(key []string) (reflect.Type, int) {
	t := configType
	for i, k := range key {
		if t.Kind() != reflect.Struct || isTextType(t) {
			return nil, i
		}
		f, ok := fieldByKey(t, k)
		if !ok {
			return nil, i
		}
		t = f.Type
	}
	return t, -1
}

func checkTable(table []string) string {
	t, bad := resolve(table)
	if bad >= 0 {
		return unknownKeyMsg(table, bad)
	}
	if t.Kind() != reflect.Struct || isTextType(t) {
		if len(table) == 1 {
			return fmt.Sprintf("is a setting, not a table: write %s = ... at the top of the file, before the first [table]", table[0])
		}
		return fmt.Sprintf("is a setting, not a table: write %s = ... under [%s]", table[len(table)-1], strings.Join(table[:len(table)-1], "."))
	}
	return ""
}

func checkKeyValue(path string, line int, key []string, v *unstable.Node) Errors {
	dotted := strings.Join(key, ".")
	t, bad := resolve(key)
	if bad >= 0 {
		return Errors{{File: path, Line: line, Key: dotted, Msg: unknownKeyMsg(key, bad)}}
	}
	if t.Kind() == reflect.Struct && !isTextType(t) {
		if v.Kind != unstable.InlineTable {
			return Errors{{File: path, Line: line, Key: dotted,
				Msg: fmt.Sprintf("want a table ([%s] on its own line, then its keys), got %s", dotted, describeValue(v))}}
		}
		var errs Errors
		for it := v.Children(); it.Next(); {
			kv := it.Node()
			if kv.Kind == unstable.KeyValue {
				errs = append(errs, checkKeyValue(path, line, append(slices.Clone(key), keyParts(kv.Key())...), kv.Value())...)
			}
		}
		return errs
	}
	if msg := checkValue(t, v); msg != "" {
		return Errors{{File: path, Line: line, Key: dotted, Msg: msg}}
	}
	return nil
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func isTextType(t reflect.Type) bool { return reflect.PointerTo(t).Implements(textUnmarshaler) }

// checkValue says what is wrong with v as a value of type t ("" if nothing).
func checkValue(t reflect.Type, v *unstable.Node) string {
	wrong := func() string { return "want " + describeType(t) + ", got " + describeValue(v) }
	switch {
	case isTextType(t):
		if v.Kind != unstable.String {
			return wrong()
		}
		x := reflect.New(t).Interface().(encoding.TextUnmarshaler)
		if err := x.UnmarshalText(v.Data); err != nil {
			return err.Error()
		}
		return ""
	case t.Kind() == reflect.Slice:
		if v.Kind != unstable.Array {
			return wrong()
		}
		i := 0
		for it := v.Children(); it.Next(); i++ {
			if msg := checkValue(t.Elem(), it.Node()); msg != "" {
				return fmt.Sprintf("item %d: %s", i+1, msg)
			}
		}
		return ""
	}
	switch t.Kind() {
	case reflect.String:
		if v.Kind != unstable.String {
			return wrong()
		}
	case reflect.Bool:
		if v.Kind != unstable.Bool {
			return wrong()
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		if v.Kind != unstable.Integer {
			return wrong()
		}
		if _, err := strconv.ParseInt(strings.ReplaceAll(string(v.Data), "_", ""), 0, t.Bits()); err != nil {
			return fmt.Sprintf("%s is too large", v.Data)
		}
	case reflect.Float64, reflect.Float32:
		if v.Kind != unstable.Float && v.Kind != unstable.Integer {
			return wrong()
		}
	}
	return ""
}

// describeType says in words what a setting of type t takes.
func describeType(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return `a duration in quotes such as "90s", "10m", "24h" or "7d"`
	case reflect.TypeFor[Prefix]():
		return `an address or CIDR in quotes such as "203.0.113.0/24"`
	case reflect.TypeFor[PortRange]():
		return `a port or range in quotes such as "5060" or "10000-20000"`
	case reflect.TypeFor[Regexp]():
		return "a regular expression in quotes"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string in quotes"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "a whole number"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Slice:
		return "a list such as " + exampleList(t.Elem())
	}
	return t.String()
}

func exampleList(elem reflect.Type) string {
	switch elem {
	case reflect.TypeFor[Prefix]():
		return `["203.0.113.0/24", "2001:db8::1"]`
	case reflect.TypeFor[PortRange]():
		return `["5060", "10000-20000"]`
	case reflect.TypeFor[Regexp]():
		return `["(?i)^Bria Push"]`
	}
	if elem.Kind() == reflect.String {
		return `["a", "b"]`
	}
	return "[...]"
}

// describeValue says in words what the file holds.
func describeValue(v *unstable.Node) string {
	switch v.Kind {
	case unstable.String:
		s := string(v.Data)
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return "the string " + strconv.Quote(s)
	case unstable.Integer, unstable.Float:
		return "the number " + string(v.Data)
	case unstable.Bool:
		return "the boolean " + string(v.Data)
	case unstable.Array:
		return "a list"
	case unstable.InlineTable:
		return "a table"
	case unstable.LocalDate, unstable.LocalTime, unstable.LocalDateTime, unstable.DateTime:
		return "the date/time " + string(v.Data)
	}
	return "a " + strings.ToLower(v.Kind.String())
}

// unknownKeyMsg explains key[bad] and suggests the nearest known key: in
// the same table by spelling, or the same name in another table.
func unknownKeyMsg(key []string, bad int) string {
	parent, _ := resolve(key[:bad])
	name := key[bad]
	msg := "unknown key"
	if parent != nil && parent.Kind() == reflect.Struct && !isTextType(parent) {
		if s := nearest(name, keysOf(parent)); s != "" {
			return msg + fmt.Sprintf("; did you mean %s?", strings.Join(append(slices.Clone(key[:bad]), s), "."))
		}
	} else if parent != nil {
		return fmt.Sprintf("%s is a setting, not a table", strings.Join(key[:bad], "."))
	}
	for _, table := range keysOf(configType) {
		f, _ := fieldByKey(configType, table)
		if f.Type.Kind() != reflect.Struct || isTextType(f.Type) {
			continue
		}
		if s := nearest(name, keysOf(f.Type)); s != "" && (bad == 0 || key[bad-1] != table) {
			return msg + fmt.Sprintf("; did you mean %s.%s (under [%s])?", table, s, table)
		}
	}
	return msg + " (contrib/sipsentry.toml lists every key)"
}

// nearest returns the candidate closest to s by edit distance, if close
// enough to be a typo (at most 2 edits, or 1 for short names).
func nearest(s string, candidates []string) string {
	best, bestD := "", 3
	if len(s) <= 4 {
		bestD = 2
	}
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
