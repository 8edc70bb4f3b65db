package engine

import (
	"fmt"

	"github.com/dropless/dropless/pkg/protocol"
)

// state is a job's step as the journal stores it: a small integer. Stored
// values never change meaning; a state that is retired keeps its number
// with a "NOT USED ANYMORE" comment, and new states take new numbers.
type state uint8

const (
	stUnknown     state = 0 // never stored
	stIdle        state = 1 // not a job state; reported when no job runs
	stDownloading state = 2
	stVerified    state = 3
	stPreflight   state = 4
	stStopping    state = 5
	stStaging     state = 6
	stBackingUp   state = 7 // the database backup and the [[data]] snapshot (only with either)
	stMigrating   state = 8 // the migrations (only with a [database])
	stSwitching   state = 9
	stStarting    state = 10
	stHealthCheck state = 11
	stCommitted   state = 12
	stRollingBack state = 13
	stRolledBack  state = 14
	stFailed      state = 15
)

// stateNames maps each state to its protocol name, as check-ins, events
// and UPDATEAGENT_FAILPOINT spell it.
var stateNames = map[state]string{
	stIdle:        protocol.StateIdle,
	stDownloading: protocol.StateDownloading,
	stVerified:    protocol.StateVerified,
	stPreflight:   protocol.StatePreflight,
	stStopping:    protocol.StateStopping,
	stStaging:     protocol.StateStaging,
	stBackingUp:   protocol.StateBackingUp,
	stMigrating:   protocol.StateMigrating,
	stSwitching:   protocol.StateSwitching,
	stStarting:    protocol.StateStarting,
	stHealthCheck: protocol.StateHealthCheck,
	stCommitted:   protocol.StateCommitted,
	stRollingBack: protocol.StateRollingBack,
	stRolledBack:  protocol.StateRolledBack,
	stFailed:      protocol.StateFailed,
}

// String returns the protocol name of s, e.g. "health_check".
func (s state) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// parseState returns the state named name (a protocol name).
func parseState(name string) (state, bool) {
	for s, n := range stateNames {
		if n == name {
			return s, true
		}
	}
	return stUnknown, false
}

// touchesApp reports whether a job in state s may have changed what runs:
// from stopping on, until it ended.
func (s state) touchesApp() bool {
	switch s {
	case stDownloading, stVerified, stPreflight, stIdle, stUnknown:
		return false
	}
	return true
}
