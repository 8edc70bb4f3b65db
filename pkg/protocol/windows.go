package protocol

import "time"

// WindowRequest is the body of PUT /api/v1/windows: a site's or a
// client's maintenance window (exactly one of Site and Client).
type WindowRequest struct {
	Site   string `json:"site,omitempty"`
	Client string `json:"client,omitempty"`
	// Weekly ranges such as "Sat 22:00-Sun 04:00" or "Mon-Fri 01:00-05:00".
	Weekly []string `json:"weekly"`
	// TZ is an IANA time zone name; empty is UTC.
	TZ string `json:"tz,omitempty"`
}

// Window is a stored maintenance window.
type Window struct {
	Site      string    `json:"site,omitempty"`
	Client    string    `json:"client,omitempty"`
	Weekly    []string  `json:"weekly"`
	TZ        string    `json:"tz"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// SiteWindow is a site's window as of now: GET /api/v1/sites/{site}/window.
type SiteWindow struct {
	Site   string `json:"site"`
	Client string `json:"client"`
	// Window is the site's own window, else its client's; nil when the
	// site has none (always open), and then left out.
	Window *Window `json:"window,omitempty"`
	// Open: the window is open now (true without a window).
	Open bool `json:"open"`
	// NextOpen is the next opening (nil when open now or always open);
	// NextOpenLocal the same in the window's zone, as text.
	NextOpen      *time.Time `json:"next_open,omitempty"`
	NextOpenLocal string     `json:"next_open_local,omitempty"`
	// NextClose is when an open window closes (nil when it never does).
	NextClose *time.Time `json:"next_close,omitempty"`
	// MayStart: a job may start now (the window is open and no freeze
	// applies); otherwise WaitReason says why and NextStart when it may.
	MayStart   bool       `json:"may_start"`
	WaitReason string     `json:"wait_reason,omitempty"`
	NextStart  *time.Time `json:"next_start,omitempty"`
	// Freezes are the freezes that apply to the site now or later.
	Freezes []Freeze `json:"freezes"`
}

// FreezeRequest is the body of POST /api/v1/freezes.
type FreezeRequest struct {
	// Client is the client whose sites it holds; empty: every site.
	Client string    `json:"client,omitempty"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Reason string    `json:"reason"`
}

// Freeze is a period in which no job starts (unless --now).
type Freeze struct {
	ID        int64     `json:"id"`
	Client    string    `json:"client,omitempty"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Reason    string    `json:"reason"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}
