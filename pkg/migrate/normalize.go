package migrate

import "strings"

// NormalizeSQL returns SQL text in a form that does not change with what
// a database or a person reformats without changing its meaning, so that
// a schema read again compares equal: comments dropped; whitespace between
// tokens dropped, or one space between two words; keywords and
// identifiers in lower case (SQLite's and unquoted PostgreSQL identifiers
// are case-insensitive); an identifier quoted with "", “ or [] written
// bare when it is a plain word, else in "" with its text as written.
// String literals are kept exactly. It never fails: text that does not
// lex (an unterminated quote) is taken to its end.
func NormalizeSQL(s string) string {
	var b strings.Builder
	prevWord := false // the last token written was a word, number, literal or identifier
	word := func(tok string) {
		if prevWord {
			b.WriteByte(' ')
		}
		b.WriteString(tok)
		prevWord = true
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				i = len(s)
			} else {
				i += 2 + end + 2
			}
		case c == '\'':
			j, _ := closeQuote(s, i, '\'')
			word(s[i:j])
			i = j
		case c == '"' || c == '`' || c == '[':
			q := c
			if c == '[' {
				q = ']'
			}
			j, closed := closeQuote(s, i, q)
			body := s[i+1 : j]
			if closed {
				body = s[i+1 : j-1]
			}
			body = strings.ReplaceAll(body, string([]byte{q, q}), string(q))
			if isPlainWord(body) {
				word(lowerASCII(body))
			} else {
				word(`"` + strings.ReplaceAll(body, `"`, `""`) + `"`)
			}
			i = j
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			word(lowerASCII(s[i:j]))
			i = j
		default:
			// Never make a comment out of two operators ("- -").
			if out := b.String(); out != "" && (c == '-' && out[len(out)-1] == '-' || c == '*' && out[len(out)-1] == '/') {
				b.WriteByte(' ')
			}
			b.WriteByte(c)
			prevWord = false
			i++
		}
	}
	return b.String()
}

// closeQuote returns the index just past the quoted token that starts at
// s[i] and ends with q (a doubled q stands for itself), or len(s) and
// false when it does not end.
func closeQuote(s string, i int, q byte) (int, bool) {
	for j := i + 1; j < len(s); j++ {
		if s[j] != q {
			continue
		}
		if j+1 < len(s) && s[j+1] == q {
			j++
			continue
		}
		return j + 1, true
	}
	return len(s), false
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// isPlainWord reports whether an identifier needs no quotes once
// lower-cased: letters, digits, _ and $, not starting with a digit or $.
func isPlainWord(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' || s[0] == '$' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isWordByte(s[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
