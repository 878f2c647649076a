package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sipsentry/sipsentry/activity"
)

const (
	timeLong  = "2006-01-02 15:04:05"
	timeShort = "01-02 15:04"
)

// WriteJSON writes the rows as one JSON array of objects.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	rows := rep.Rows
	if rows == nil {
		rows = []Row{}
	}
	return enc.Encode(rows)
}

// CSVHeader is the CSV column list; it matches the JSON keys.
var CSVHeader = []string{"ip", "country_mmdb", "country_list", "in_allowed", "asn", "org", "first_seen", "last_seen",
	"auth_ok", "auth_failed", "unknown_account", "acl", "other", "injection", "failures", "unanswered_challenges", "events",
	"accounts_ok", "accounts", "distinct_accounts", "last_user_agent", "local", "status", "banned_until", "offences", "notes"}

// WriteCSV writes a header line and one record per row. Accounts are
// "name:count" joined by "|"; notes are joined by "; ". Peer-supplied text
// is escaped like in the table and guarded against spreadsheet formulas.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	for i := range rep.Rows {
		r := &rep.Rows[i]
		join := func(as []activity.AccountCount) string {
			parts := make([]string, len(as))
			for j, a := range as {
				parts[j] = Escape(a.Account) + ":" + strconv.Itoa(a.Count)
			}
			return noFormula(strings.Join(parts, "|"))
		}
		until := ""
		if r.BannedUntil != nil {
			until = r.BannedUntil.Format(time.RFC3339)
		}
		rec := []string{
			r.IP.String(), r.CountryMMDB, r.CountryList, boolCSV(r.InAllowed), uintCSV(r.ASN), noFormula(Escape(r.Org)),
			timeCSV(r.FirstSeen), timeCSV(r.LastSeen),
			strconv.Itoa(r.AuthOK), strconv.Itoa(r.AuthFailed), strconv.Itoa(r.UnknownAccount), strconv.Itoa(r.ACL),
			strconv.Itoa(r.Other), strconv.Itoa(r.Injection), strconv.Itoa(r.Failures),
			strconv.Itoa(r.Unanswered), strconv.Itoa(r.Events),
			join(r.AccountsOK), join(r.Accounts), strconv.Itoa(r.DistinctAccounts), noFormula(Escape(r.LastUserAgent)),
			strconv.FormatBool(r.Local), r.Status, until, strconv.Itoa(r.Offences), noFormula(Escape(strings.Join(r.Notes, "; "))),
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func boolCSV(b *bool) string {
	if b == nil {
		return ""
	}
	return strconv.FormatBool(*b)
}

func uintCSV(u uint) string {
	if u == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(u), 10)
}

func timeCSV(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// noFormula keeps a spreadsheet from evaluating peer-supplied text
// (an account named "=HYPERLINK(...)").
func noFormula(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Escape makes peer-supplied text safe to print: control characters, C1
// controls, bidi overrides and invalid UTF-8 become visible escapes.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if needsEscape(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case needsEscape(r):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
		i += n
	}
	return b.String()
}

func needsEscape(r rune) bool {
	return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError ||
		(r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f
}

// runeWidth is the terminal width of r: 2 for East Asian wide and
// full-width characters, else 1 (control characters are escaped first).
func runeWidth(r rune) int {
	switch {
	case r >= 0x1100 && r <= 0x115f, r >= 0x2e80 && r <= 0xa4cf && r != 0x303f,
		r >= 0xac00 && r <= 0xd7a3, r >= 0xf900 && r <= 0xfaff, r >= 0xfe30 && r <= 0xfe4f,
		r >= 0xff00 && r <= 0xff60, r >= 0xffe0 && r <= 0xffe6, r >= 0x1f300 && r <= 0x1faff,
		r >= 0x20000 && r <= 0x3fffd:
		return 2
	}
	return 1
}

// Width is the display width of s.
func Width(s string) int {
	n := 0
	for _, r := range s {
		n += runeWidth(r)
	}
	return n
}

// Truncate cuts s to at most w columns, ending in "…" when cut.
func Truncate(s string, w int) string {
	if Width(s) <= w {
		return s
	}
	if w <= 0 {
		return ""
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		rw := runeWidth(r)
		if n+rw > w-1 {
			break
		}
		b.WriteRune(r)
		n += rw
	}
	b.WriteString("…")
	return b.String()
}

func pad(s string, w int, right bool) string {
	gap := w - Width(s)
	if gap <= 0 {
		return s
	}
	if right {
		return strings.Repeat(" ", gap) + s
	}
	return s + strings.Repeat(" ", gap)
}

// TableOptions control the table printer.
type TableOptions struct {
	// Width is the terminal width; 0 means unlimited (a pipe or a file).
	Width int
	// Footer lines (e.g. "garbage lines: 2") printed after the rows.
	Footer []string
}

type column struct {
	head   string
	right  bool // numbers
	min    int  // shrink no further (0: not shrinkable)
	cells  []string
	width  int
	hidden bool
}

// WriteTable prints the header summary and the rows as a table that fits
// opts.Width without cutting anything: columns without any data are left
// out first, then the times get shorter; when even that does not fit, each
// source is printed as a short block of lines, and every line longer than
// the width (summary, blocks, footer) wraps onto indented lines.
func WriteTable(w io.Writer, rep *Report, opts TableOptions) error {
	var b strings.Builder
	writeSummary(&b, rep, opts.Width)
	if len(rep.Rows) == 0 {
		b.WriteString("no sources match\n")
	} else {
		try := func(layout string, hideEmpty bool) []*column {
			cols := tableColumns(rep, layout)
			var hidden []string
			if hideEmpty {
				hidden = hideEmptyColumns(cols)
			}
			if opts.Width > 0 && !fit(cols, opts.Width) {
				return nil
			}
			writeCols(&b, cols)
			if len(hidden) > 0 {
				writeWrapped(&b, "(no data, not shown: "+strings.Join(hidden, ", ")+")", opts.Width)
			}
			return cols
		}
		if try(timeLong, false) == nil && try(timeLong, true) == nil && try(timeShort, true) == nil {
			writeBlocks(&b, rep, opts.Width)
		}
	}
	for _, f := range opts.Footer {
		writeWrapped(&b, f, opts.Width)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeWrapped writes s as one line, or, when it is wider than width (0:
// unlimited), as several: broken at spaces where it can, hard where a word
// is wider than the line, continuation lines indented by two spaces.
func writeWrapped(b *strings.Builder, s string, width int) {
	indent := strings.Repeat(" ", len(s)-len(strings.TrimLeft(s, " "))+2)
	first := true
	for {
		limit := width
		prefix := ""
		if !first {
			limit -= len(indent)
			prefix = indent
		}
		if width <= 0 || Width(s) <= limit || limit < 4 {
			b.WriteString(prefix + s + "\n")
			return
		}
		// The longest head of s that fits, ending before a space if one is there.
		// A break after a comma or between wide gaps keeps "JP 2" together;
		// any space will do when there is none of those.
		cut, n, lastSpace, lastGap := 0, 0, -1, -1
		for i, r := range s {
			rw := runeWidth(r)
			if n+rw > limit {
				break
			}
			n += rw
			cut = i + utf8.RuneLen(r)
			if r == ' ' && i > 0 {
				lastSpace = i
				if s[i-1] == ',' || s[i-1] == ' ' {
					lastGap = i
				}
			}
		}
		head, rest := s[:cut], s[cut:]
		switch {
		case cut < len(s) && s[cut] == ' ' && (s[cut-1] == ',' || s[cut-1] == ' ' || lastGap < 0):
			// a clean break right at the limit
		case lastGap > 0:
			head, rest = s[:lastGap], s[lastGap+1:]
		case lastSpace > 0 && s[cut] != ' ':
			head, rest = s[:lastSpace], s[lastSpace+1:]
		}
		b.WriteString(prefix + strings.TrimRight(head, " ") + "\n")
		s = strings.TrimLeft(rest, " ")
		first = false
		if s == "" {
			return
		}
	}
}

// hideEmptyColumns hides the columns whose every cell says "no data" and
// returns their names.
func hideEmptyColumns(cols []*column) []string {
	var names []string
	for _, c := range cols {
		if c.hidden || c.head == "IP" {
			continue
		}
		empty := true
		for _, s := range c.cells {
			if s != "-" && s != "?" {
				empty = false
				break
			}
		}
		if empty {
			c.hidden = true
			names = append(names, c.head)
		}
	}
	return names
}

func writeSummary(b *strings.Builder, rep *Report, width int) {
	s := rep.Summary
	var bc []string
	for _, c := range s.ByCountry {
		bc = append(bc, fmt.Sprintf("%s %d", c.Country, c.Sources))
	}
	shown := ""
	if len(rep.Rows) < s.Sources {
		shown = fmt.Sprintf(" (showing %d)", len(rep.Rows))
	}
	line := fmt.Sprintf("sources: %d%s   events: %d   attempts: %d   bans: %d   by country: %s",
		s.Sources, shown, s.Events, s.Attempts, s.Bans, orDash(strings.Join(bc, ", ")))
	writeWrapped(b, line, width)
	allowed := "-"
	if len(rep.Geo.AllowCountries) > 0 {
		allowed = strings.Join(rep.Geo.AllowCountries, ",")
	}
	src := []string{}
	if rep.Geo.ListsLoaded {
		src = append(src, "country lists")
	}
	if rep.Geo.MMDBLoaded {
		src = append(src, "country mmdb")
	}
	if rep.Geo.ASNLoaded {
		src = append(src, "ASN mmdb")
	}
	line = fmt.Sprintf("allowed countries: %s   geo: %s", allowed, orDash(strings.Join(src, ", ")))
	writeWrapped(b, line, width)
	b.WriteByte('\n')
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Cell formatting shared by the table and the block layout.

func allowCell(r *Row) string {
	if r.Local {
		return "local"
	}
	if r.InAllowed == nil {
		return "-"
	}
	if *r.InAllowed {
		return "yes"
	}
	return "no"
}

func countryCell(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func timeCell(t time.Time, layout string) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(layout)
}

// accountsCell lists the accounts that authenticated, then those that
// failed, each failed one marked with a leading "!".
func accountsCell(r *Row) string {
	if len(r.Accounts) == 0 && len(r.AccountsOK) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(r.AccountsOK)+len(r.Accounts))
	add := func(mark string, a activity.AccountCount) {
		p := mark + Escape(a.Account)
		if a.Count > 1 {
			p += "(" + strconv.Itoa(a.Count) + ")"
		}
		parts = append(parts, p)
	}
	for _, a := range r.AccountsOK {
		add("", a)
	}
	for _, a := range r.Accounts {
		add("!", a)
	}
	s := strings.Join(parts, ",")
	if more := r.DistinctAccounts - len(r.Accounts); more > 0 {
		s += " +" + strconv.Itoa(more)
	}
	return s
}

func statusCell(r *Row, layout string) string {
	switch r.Status {
	case StatusBanned, StatusWouldBan:
		s := "banned"
		if r.Status == StatusWouldBan {
			s = "would ban"
		}
		if r.BannedUntil != nil {
			s += " until " + r.BannedUntil.UTC().Format(layout)
		}
		if r.Offences > 0 {
			s += fmt.Sprintf(" (offence %d)", r.Offences)
		}
		return s
	case StatusLearnedPush:
		return "learned push"
	case StatusAllowed:
		return "allowed: static"
	case StatusAllowedCountry:
		return "allowed: country"
	case StatusWouldDrop:
		return "would drop"
	case StatusNone, "":
		return "-"
	}
	return r.Status
}

func uaCell(r *Row) string {
	if r.LastUserAgent == "" {
		return "-"
	}
	return Escape(r.LastUserAgent)
}

func notesCell(r *Row) string {
	if len(r.Notes) == 0 {
		return "-"
	}
	return Escape(strings.Join(r.Notes, "; "))
}

func asnCell(r *Row) string {
	if r.ASN == 0 {
		return "-"
	}
	return "AS" + strconv.FormatUint(uint64(r.ASN), 10)
}

func tableColumns(rep *Report, layout string) []*column {
	n := len(rep.Rows)
	mk := func(head string, right bool, min int) *column {
		return &column{head: head, right: right, min: min, cells: make([]string, 0, n)}
	}
	ip, mm, li, al := mk("IP", false, 0), mk("MMDB", false, 0), mk("LIST", false, 0), mk("ALLOW", false, 0)
	asn, org := mk("ASN", false, 0), mk("ORG", false, 6)
	first, last := mk("FIRST", false, 0), mk("LAST", false, 0)
	ok, fail, unk, acl, oth := mk("OK", true, 0), mk("FAIL", true, 0), mk("UNK", true, 0), mk("ACL", true, 0), mk("OTH", true, 0)
	chal, inj := mk("CHAL", true, 0), mk("INJ", true, 0)
	acc, ua, st, note := mk("ACCOUNTS", false, 8), mk("UA", false, 5), mk("STATUS", false, 8), mk("NOTE", false, 8)
	for i := range rep.Rows {
		r := &rep.Rows[i]
		ip.cells = append(ip.cells, r.IP.String())
		mm.cells = append(mm.cells, countryCell(r.CountryMMDB))
		li.cells = append(li.cells, countryCell(r.CountryList))
		al.cells = append(al.cells, allowCell(r))
		asn.cells = append(asn.cells, asnCell(r))
		org.cells = append(org.cells, orDash(Escape(r.Org)))
		first.cells = append(first.cells, timeCell(r.FirstSeen, layout))
		last.cells = append(last.cells, timeCell(r.LastSeen, layout))
		ok.cells = append(ok.cells, strconv.Itoa(r.AuthOK))
		fail.cells = append(fail.cells, strconv.Itoa(r.AuthFailed))
		unk.cells = append(unk.cells, strconv.Itoa(r.UnknownAccount))
		acl.cells = append(acl.cells, strconv.Itoa(r.ACL))
		oth.cells = append(oth.cells, strconv.Itoa(r.Other))
		chal.cells = append(chal.cells, strconv.Itoa(r.Unanswered))
		inj.cells = append(inj.cells, strconv.Itoa(r.Injection))
		acc.cells = append(acc.cells, accountsCell(r))
		ua.cells = append(ua.cells, uaCell(r))
		st.cells = append(st.cells, statusCell(r, layout))
		note.cells = append(note.cells, notesCell(r))
	}
	asn.hidden, org.hidden = !rep.Geo.ASNLoaded, !rep.Geo.ASNLoaded
	cols := []*column{ip, mm, li, al, asn, org, first, last, ok, fail, unk, acl, chal, inj, oth, acc, ua, st, note}
	for _, c := range cols {
		c.width = Width(c.head)
		for _, s := range c.cells {
			c.width = max(c.width, Width(s))
		}
	}
	return cols
}

// fit reports whether the visible columns fit width as they are: a cell
// is never cut, so a table that does not fit gives way to another layout.
func fit(cols []*column, width int) bool {
	t, n := 0, 0
	for _, c := range cols {
		if !c.hidden {
			t += c.width
			n++
		}
	}
	return t+2*(n-1) <= width
}

func writeCols(b *strings.Builder, cols []*column) {
	var vis []*column
	for _, c := range cols {
		if !c.hidden {
			vis = append(vis, c)
		}
	}
	line := func(cell func(c *column) string) {
		var l strings.Builder
		for i, c := range vis {
			s := cell(c)
			if i == len(vis)-1 && !c.right {
				l.WriteString(s)
				break
			}
			l.WriteString(pad(s, c.width, c.right))
			if i < len(vis)-1 {
				l.WriteString("  ")
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " "))
		b.WriteByte('\n')
	}
	line(func(c *column) string { return c.head })
	for i := range vis[0].cells {
		line(func(c *column) string { return c.cells[i] })
	}
}

// writeBlocks is the layout for terminals too narrow for any table: a
// few lines per source, each cut to the width.
func writeBlocks(b *strings.Builder, rep *Report, width int) {
	for i := range rep.Rows {
		r := &rep.Rows[i]
		head := fmt.Sprintf("%s  %s (mmdb %s)  allowed %s  %s", r.IP, countryCell(r.CountryList), countryCell(r.CountryMMDB),
			allowCell(r), statusCell(r, timeLong))
		if rep.Geo.ASNLoaded {
			head += "  " + asnCell(r) + " " + orDash(Escape(r.Org))
		}
		lines := []string{
			head,
			fmt.Sprintf("  seen %s .. %s", timeCell(r.FirstSeen, timeLong), timeCell(r.LastSeen, timeLong)),
			fmt.Sprintf("  ok %d  failed %d  unknown %d  acl %d  unanswered %d  injection %d  other %d",
				r.AuthOK, r.AuthFailed, r.UnknownAccount, r.ACL, r.Unanswered, r.Injection, r.Other),
			"  accounts " + accountsCell(r),
		}
		if r.LastUserAgent != "" {
			lines = append(lines, "  ua "+uaCell(r))
		}
		if len(r.Notes) > 0 {
			lines = append(lines, "  note "+notesCell(r))
		}
		for _, l := range lines {
			writeWrapped(b, l, width)
		}
	}
}
