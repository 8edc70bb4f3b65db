package drift

import (
	"slices"
	"testing"

	"github.com/dropless/dropless/pkg/migrate"
	"github.com/dropless/dropless/pkg/protocol"
)

var baseline = []migrate.Object{
	{Kind: "table", Name: "customers", Def: "create table customers(id integer primary key,name text)"},
	{Kind: "column", Name: "customers.id", Table: "customers", Def: "integer pk=1"},
	{Kind: "column", Name: "customers.name", Table: "customers", Def: "text"},
	{Kind: "table", Name: "x", Def: "create table x(a)"},
	{Kind: "column", Name: "x.a", Table: "x", Def: ""},
	{Kind: "index", Name: "x_a", Table: "x", Def: "create index x_a on x(a)"},
	{Kind: "view", Name: "v", Def: "create view v as select 1"},
}

func TestSchema(t *testing.T) {
	with := func(objs ...migrate.Object) []migrate.Object { return append(slices.Clone(baseline), objs...) }
	hotfix := migrate.Object{Kind: "column", Name: "customers.hotfix_flag", Table: "customers", Def: "integer"}
	tests := []struct {
		name   string
		now    []migrate.Object
		ignore []string
		prefix string
		want   []string
	}{
		{name: "unchanged", now: baseline},
		{name: "added column and index", now: func() []migrate.Object {
			n := with(hotfix, migrate.Object{Kind: "index", Name: "hotfix_idx", Table: "customers", Def: "create index hotfix_idx on customers(name)"})
			n[0].Def = "create table customers(id integer primary key,name text,hotfix_flag integer)"
			return n
		}(), want: []string{"schema: added column customers.hotfix_flag", "schema: added index hotfix_idx"}},
		{name: "removed table whole", now: slices.Concat(baseline[:3], baseline[6:]), want: []string{"schema: removed table x"}},
		{name: "added table whole", now: with(
			migrate.Object{Kind: "table", Name: "audit_log", Def: "create table audit_log(a)"},
			migrate.Object{Kind: "column", Name: "audit_log.a", Table: "audit_log"},
			migrate.Object{Kind: "index", Name: "audit_a", Table: "audit_log", Def: "create index audit_a on audit_log(a)"},
		), want: []string{"schema: added table audit_log"}},
		{name: "changed view", now: func() []migrate.Object {
			n := slices.Clone(baseline)
			n[6].Def = "create view v as select 2"
			return n
		}(), want: []string{"schema: changed view v"}},
		{name: "changed table constraint", now: func() []migrate.Object {
			n := slices.Clone(baseline)
			n[0].Def = "create table customers(id integer primary key,name text,check(id>0))"
			return n
		}(), want: []string{"schema: changed table customers"}},
		{name: "ignored by name", now: with(
			migrate.Object{Kind: "table", Name: "audit_log", Def: "create table audit_log(a)"}, hotfix),
			ignore: []string{"audit_*", "logs/", "*.hotfix_flag"}},
		{name: "ignored by table", now: with(hotfix), ignore: []string{"customers"}},
		{name: "reported only", now: with(hotfix), prefix: protocol.DriftReportedOnly,
			want: []string{"schema (reported only): added column customers.hotfix_flag"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := tt.prefix
			if prefix == "" {
				prefix = SchemaPrefix
			}
			got := Schema(baseline, tt.now, tt.ignore, prefix)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Schema = %q, want %q", got, tt.want)
			}
		})
	}
}
