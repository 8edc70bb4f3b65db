package migrate

import (
	"strings"
	"testing"
)

func TestNormalizeSQL(t *testing.T) {
	tests := []struct{ name, a, b string }{
		{"whitespace", "CREATE TABLE t (\n\ta INTEGER,\n  b TEXT\n)", "create table t(a integer, b text)"},
		{"keyword case", "create INDEX i ON t(a)", "CREATE index I on T (A)"},
		{"double quotes", `CREATE TABLE "customers" ("id" INTEGER)`, "CREATE TABLE customers (id INTEGER)"},
		{"backquotes and brackets", "CREATE TABLE `t` ([a] INT)", "CREATE TABLE t (a INT)"},
		{"comments", "CREATE TABLE t ( -- the id\n a INT /* key */ )", "CREATE TABLE t (a INT)"},
		{"qualified", `"main"."t"`, "main . t"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if a, b := NormalizeSQL(tt.a), NormalizeSQL(tt.b); a != b {
				t.Errorf("NormalizeSQL(%q) = %q, NormalizeSQL(%q) = %q; want equal", tt.a, a, tt.b, b)
			}
		})
	}
	differ := []struct{ name, a, b string }{
		{"string case", "DEFAULT 'Yes'", "DEFAULT 'yes'"},
		{"string spaces", "DEFAULT 'a  b'", "DEFAULT 'a b'"},
		{"identifier with a space", `CREATE TABLE "a b" (x)`, `CREATE TABLE a b (x)`},
		{"one literal or two", "'a''b'", "'a' 'b'"},
		{"column", "CREATE TABLE t (a INT)", "CREATE TABLE t (a INT, b INT)"},
		{"operator and comment", "a - -b", "a --b"},
	}
	for _, tt := range differ {
		t.Run("differ/"+tt.name, func(t *testing.T) {
			if a, b := NormalizeSQL(tt.a), NormalizeSQL(tt.b); a == b {
				t.Errorf("NormalizeSQL(%q) = NormalizeSQL(%q) = %q; want different", tt.a, tt.b, a)
			}
		})
	}
}

// FuzzNormalizeSQL checks that normalising is stable (a second pass
// changes nothing: a schema read again never flaps), and that outside
// quotes and comments neither the case of ASCII letters nor the amount of
// whitespace between tokens matters.
func FuzzNormalizeSQL(f *testing.F) {
	for _, s := range []string{
		"CREATE TABLE t (\n\ta INTEGER NOT NULL DEFAULT 'x',\n  b TEXT\n)",
		`CREATE INDEX "hotfix idx" ON [customers] (name) WHERE a <> 'b''c'`,
		"a-/*x*/-b", "'unterminated", `"a""`, "[x", "CREATE VIEW v AS SELECT 1.5e3 -- c", "é\"É\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := NormalizeSQL(s)
		if again := NormalizeSQL(n); again != n {
			t.Fatalf("NormalizeSQL(%q) = %q, again %q", s, n, again)
		}
		if strings.ContainsAny(s, "'\"`[-/") {
			return
		}
		if u := NormalizeSQL(upperASCII(s)); u != n {
			t.Errorf("NormalizeSQL(%q) = %q, of its upper case %q", s, n, u)
		}
		if w := NormalizeSQL(strings.ReplaceAll(s, " ", " \n\t ")); w != n {
			t.Errorf("NormalizeSQL(%q) = %q, with more whitespace %q", s, n, w)
		}
	})
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
