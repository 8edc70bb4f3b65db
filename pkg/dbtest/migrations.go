package dbtest

import "maps"

// The product's migration history the migrate and engine tests apply,
// as a bundle's migrations/ holds it (file name to content): SQL that
// SQLite and PostgreSQL both accept.
var (
	// Release1 creates customers and adds their email.
	Release1 = map[string]string{
		"0001_create_customers.up.sql":   "CREATE TABLE customers (\n  id INTEGER PRIMARY KEY,\n  name TEXT NOT NULL\n);\n",
		"0001_create_customers.down.sql": "DROP TABLE customers;\n",
		"0002_add_email.up.sql":          "ALTER TABLE customers ADD COLUMN email TEXT;\n",
		"0002_add_email.down.sql":        "ALTER TABLE customers DROP COLUMN email;\n",
	}
	// Release2 is Release1 plus orders and a seeded vendor row.
	Release2 = Merge(Release1, map[string]string{
		"0003_orders.up.sql": "CREATE TABLE orders (\n  id INTEGER PRIMARY KEY,\n  customer_id INTEGER NOT NULL REFERENCES customers (id),\n  total NUMERIC NOT NULL\n);\n" +
			"CREATE INDEX orders_customer ON orders (customer_id);\n",
		"0003_orders.down.sql":      "DROP TABLE orders;\n",
		"0004_seed_vendor.up.sql":   "INSERT INTO customers (id, name) VALUES (1000, 'vendor');\n",
		"0004_seed_vendor.down.sql": "DELETE FROM customers WHERE id = 1000;\n",
	})
	// BadMigration fails at its second statement (line 2), after its
	// first created a table.
	BadMigration = map[string]string{
		"0005_bad.up.sql":   "CREATE TABLE audit (id INTEGER PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);\n",
		"0005_bad.down.sql": "DROP TABLE audit;\n",
	}
)

// Merge returns a new set of migration files: all of ms, later ones
// winning.
func Merge(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// Without returns a copy of m without the files names.
func Without(m map[string]string, names ...string) map[string]string {
	out := maps.Clone(m)
	for _, n := range names {
		delete(out, n)
	}
	return out
}
