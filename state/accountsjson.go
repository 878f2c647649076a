package state

import (
	"strconv"
	"unicode/utf8"

	"github.com/sipsentry/sipsentry/activity"
)

// appendAccountsJSON appends the sources.accounts column for accounts: the
// bytes json.Marshal writes for them (nil as [], not null), without its
// reflection (json.Marshal was 4–7 % of BenchmarkApplySources' CPU once
// rows went in multi-row statements). TestAccountsJSONMatchesMarshal and
// FuzzAccountsJSON hold it to json.Marshal byte for byte.
func appendAccountsJSON(dst []byte, accounts []activity.AccountCount) []byte {
	dst = append(dst, '[')
	for i, a := range accounts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"account":`...)
		dst = appendJSONString(dst, a.Account)
		dst = append(dst, `,"count":`...)
		dst = strconv.AppendInt(dst, int64(a.Count), 10)
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

// appendJSONString quotes s as encoding/json does with its default HTML
// escaping: `"` and `\` escaped; \b \f \n \r \t by name; other control
// bytes and < > & as \u00XX; an invalid UTF-8 byte as \ufffd; U+2028 and
// U+2029 as \u2028 and \u2029. Account names are the attacker's: nothing
// in them may end the string or the column early.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
