package drift

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/dropless/dropless/pkg/migrate"
	"github.com/dropless/dropless/pkg/protocol"
)

// Schema drift: the client database's schema as the app left it after the
// last job that ended with the app healthy (the baseline, a SQL drop
// being a change since), compared object by object. Each change is one
// line naming the object:
//
//	schema: added column customers.hotfix_flag
//	schema: added index hotfix_idx
//	schema: removed table x
//	schema: changed view v
//
// A table added or removed is one line, not one per column and index;
// a table whose columns changed is reported by its columns.

// SchemaPrefix starts a schema drift line that blocks upgrades; lines of
// a site configured to only report schema changes start with
// protocol.DriftReportedOnly instead.
const SchemaPrefix = "schema: "

// Schema compares the schema now with the baseline and returns the
// changes, sorted by object name, each line starting with prefix
// (SchemaPrefix or protocol.DriftReportedOnly). Objects whose name, or
// whose table's name, matches a drift_ignore pattern without a slash
// (path.Match: "audit_*", "customers.tmp_*") are left out.
func Schema(baseline, now []migrate.Object, ignore []string, prefix string) []string {
	type key struct{ kind, name string }
	index := func(objs []migrate.Object, ignore []string) map[key]migrate.Object {
		m := make(map[key]migrate.Object, len(objs))
		for _, o := range objs {
			if !SchemaIgnored(o, ignore) {
				m[key{o.Kind, o.Name}] = o
			}
		}
		return m
	}
	was, is := index(baseline, ignore), index(now, ignore)
	// Tables with a column changed, ignored ones included: their
	// definition (SQLite's CREATE TABLE text) changed with it.
	colsChanged := map[string]bool{}
	allWas, allIs := index(baseline, nil), index(now, nil)
	for _, pair := range [][2]map[key]migrate.Object{{allWas, allIs}, {allIs, allWas}} {
		for k, o := range pair[0] {
			if other, ok := pair[1][k]; k.kind == "column" && (!ok || other.Def != o.Def) {
				colsChanged[o.Table] = true
			}
		}
	}
	// Tables (and views) added or removed whole: their columns, indexes ... are not
	// listed one by one.
	whole := map[string]bool{}
	for k := range is {
		if _, ok := was[k]; !ok && (k.kind == "table" || k.kind == "view") {
			whole[k.name] = true
		}
	}
	for k := range was {
		if _, ok := is[k]; !ok && (k.kind == "table" || k.kind == "view") {
			whole[k.name] = true
		}
	}
	type change struct{ name, line string }
	var changes []change
	add := func(what string, o migrate.Object) {
		if o.Kind != "table" && o.Kind != "view" && whole[o.Table] {
			return
		}
		changes = append(changes, change{o.Name, fmt.Sprintf("%s%s %s %s", prefix, what, o.Kind, o.Name)})
	}
	for k, o := range is {
		old, ok := was[k]
		switch {
		case !ok:
			add("added", o)
		case old.Def != o.Def && o.Kind != "table":
			add("changed", o)
		}
	}
	for k, o := range was {
		if _, ok := is[k]; !ok {
			add("removed", o)
		}
	}
	// A table whose definition changed but none of its columns (a
	// constraint in SQLite's CREATE TABLE text, say).
	for k, o := range is {
		if old, ok := was[k]; ok && k.kind == "table" && old.Def != o.Def && !colsChanged[o.Name] {
			changes = append(changes, change{o.Name, fmt.Sprintf("%schanged table %s", prefix, o.Name)})
		}
	}
	slices.SortFunc(changes, func(a, b change) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.line, b.line)
	})
	out := make([]string, len(changes))
	for i, c := range changes {
		out[i] = c.line
	}
	return out
}

// SchemaIgnored reports whether a drift_ignore pattern without a slash
// matches the object's name or its table's.
func SchemaIgnored(o migrate.Object, patterns []string) bool {
	for _, pat := range patterns {
		if strings.Contains(pat, "/") {
			continue
		}
		for _, name := range []string{o.Name, o.Table} {
			if ok, _ := path.Match(pat, name); ok && name != "" {
				return true
			}
		}
	}
	return false
}

// SchemaMode is the [database] schema_drift setting: "block" (the
// default), "report" or "off".
type SchemaMode string

// Schema drift modes.
const (
	SchemaBlock  SchemaMode = "block"
	SchemaReport SchemaMode = "report"
	SchemaOff    SchemaMode = "off"
)

// Prefix is the start of the mode's drift lines.
func (m SchemaMode) Prefix() string {
	if m == SchemaReport {
		return protocol.DriftReportedOnly
	}
	return SchemaPrefix
}
