// Package fault classifies errors the server shows to API callers: each
// carries a kind (mapped to an HTTP status by the API) and a message that is
// safe to show a user and says what to do. Errors that are not a *Error are
// internal and shown as a generic message, never verbatim.
package fault

import (
	"errors"
	"fmt"
)

// Kind is the class of a user-facing error.
type Kind int

// Kinds of user-facing errors.
const (
	Invalid      Kind = iota + 1 // the request is wrong: 400
	NotFound                     // 404
	Conflict                     // state forbids it: 409
	TooLarge                     // 413
	Unavailable                  // 503
	Unauthorized                 // 401
	Forbidden                    // 403
)

// Error is a user-facing error.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // optional cause, for errors.Is
}

func (e *Error) Error() string { return e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// New returns a user-facing error of kind k.
func New(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// Wrap returns a user-facing error of kind k whose message is err's text.
func Wrap(k Kind, err error) error {
	return &Error{Kind: k, Msg: err.Error(), Err: err}
}

// As returns the user-facing error in err's chain, if any.
func As(err error) (*Error, bool) {
	var fe *Error
	ok := errors.As(err, &fe)
	return fe, ok
}
