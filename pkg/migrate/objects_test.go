package migrate

import (
	"context"
	"slices"
	"testing"
)

// TestReadSchema reads the schema the release's migrations made: every
// table, column, index and view by name, the agent's own record table
// left out, and the same objects again after the database rewrote itself
// (VACUUM) and after an equivalent view was written differently.
func TestReadSchema(t *testing.T) {
	eachTarget(t, func(t *testing.T, tg *target) {
		ctx := context.Background()
		applyRelease(t, tg.open(t), load(t, release2), "1.1.0")
		tg.appExec(t, "CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100")
		objs, err := ReadSchema(ctx, tg.driver, tg.dsn)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range objs {
			keys = append(keys, o.Key())
			if o.Name == TableName || o.Table == TableName {
				t.Errorf("the record table is in the schema: %+v", o)
			}
		}
		for _, want := range []string{"table customers", "column customers.email", "table orders", "column orders.customer_id",
			"index orders_customer", "view big_orders"} {
			if !slices.Contains(keys, want) {
				t.Errorf("no %q in %v", want, keys)
			}
		}
		if tg.driver == "sqlite" {
			tg.appExec(t, "VACUUM")
		}
		tg.appExec(t, "DROP VIEW big_orders", "CREATE   VIEW \"big_orders\" AS\n  SELECT id, total\n  FROM orders WHERE total > 100")
		again, err := ReadSchema(ctx, tg.driver, tg.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(objs, again) {
			t.Errorf("the schema read again differs:\n%v\n%v", objs, again)
		}
	})
}

// TestReadSchemaNoDatabase: a SQLite file that does not exist yet has no
// schema, and reading it creates nothing.
func TestReadSchemaNoDatabase(t *testing.T) {
	tg := newSQLiteTarget(t, false)
	objs, err := ReadSchema(context.Background(), tg.driver, tg.dsn)
	if err != nil || len(objs) != 0 {
		t.Fatalf("ReadSchema = %v, %v; want nothing", objs, err)
	}
	if tables := tg.tables(t); len(tables) != 0 {
		t.Errorf("tables %v", tables)
	}
}
