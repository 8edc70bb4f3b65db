package migrate

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every refusal and failure of this package matches one of
// them with [errors.Is]; the message itself names the migration or file
// concerned and says what to do.
var (
	// ErrInvalid means a bundle's migrations/ directory is not usable: a
	// badly named file, a down migration without its up migration, one
	// number used by two migrations, a directory.
	ErrInvalid = errors.New("invalid migrations")

	// ErrDrift means a migration recorded in the database differs from the
	// bundle's migration with the same number (another checksum or name):
	// the database or the bundle was changed by hand. Plan refuses; nothing
	// is touched.
	ErrDrift = errors.New("migration drift")

	// ErrBundleOlder means the database records migrations the bundle does
	// not have: the bundle is older than the database. Plan refuses unless
	// the plan is a downgrade ([PlanOptions.AllowDowngrade]).
	ErrBundleOlder = errors.New("database has migrations the bundle does not have")

	// ErrIrreversible means migrations would be applied (or taken down)
	// that have no down migration, without the explicit permission
	// [PlanOptions] asks for; or that a rollback would need a down
	// migration that does not exist.
	ErrIrreversible = errors.New("migrations cannot be rolled back")

	// ErrMigration means a migration's SQL failed. The error is a
	// [*MigrationError] naming the file.
	ErrMigration = errors.New("migration failed")

	// ErrStale means the database's migration records changed since the
	// [Plan] (or [Backup]) was made, or a plan, backup and database do not
	// belong together.
	ErrStale = errors.New("database changed since it was planned")

	// ErrNoBackup means [OpenBackup] found no completed backup: [DB.Backup]
	// never finished, so [DB.Up] never ran.
	ErrNoBackup = errors.New("no backup")

	// ErrVerify means a backup or a restored database failed its check
	// (integrity, migration records, fingerprint or schema).
	ErrVerify = errors.New("verification failed")

	// ErrUnsupported means a database driver or DSN this package cannot
	// work with.
	ErrUnsupported = errors.New("unsupported database")
)

// MigrationError is the error of a migration whose SQL failed.
type MigrationError struct {
	// File is the migration's file name, e.g. "0002_add_email.up.sql".
	File string
	// Line and Column locate the error in the file when the database
	// reports a position (PostgreSQL does); 0 otherwise.
	Line, Column int
	// Err is the database's error.
	Err error
}

// Error returns "migration 0002_add_email.up.sql failed at line 3, column
// 8: <the database's error>".
func (e *MigrationError) Error() string {
	where := ""
	if e.Line > 0 {
		where = fmt.Sprintf(" at line %d, column %d", e.Line, e.Column)
	}
	return fmt.Sprintf("migration %s failed%s: %v", e.File, where, e.Err)
}

// Unwrap returns the database's error.
func (e *MigrationError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrMigration].
func (e *MigrationError) Is(target error) bool { return target == ErrMigration }

// msgError is an error with its own message that matches a sentinel (and
// possibly a cause) with errors.Is and errors.As.
type msgError struct {
	msg  string
	errs []error
}

func (e *msgError) Error() string   { return e.msg }
func (e *msgError) Unwrap() []error { return e.errs }

// errorf returns an error with the formatted message that matches sentinel.
// A %w verb in format also wraps that argument.
func errorf(sentinel error, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	errs := []error{sentinel}
	if u := errors.Unwrap(err); u != nil {
		errs = append(errs, u)
	} else if m, ok := err.(interface{ Unwrap() []error }); ok {
		errs = append(errs, m.Unwrap()...)
	}
	return &msgError{msg: err.Error(), errs: errs}
}
