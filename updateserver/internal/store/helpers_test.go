package store

import "fmt"

func fmtSscan(name string, v *int) (int, error) { return fmt.Sscanf(name, "schema-%d.sql", v) }
