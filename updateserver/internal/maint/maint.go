// Package maint is support's maintenance windows and freezes on the
// server: setting and clearing windows (a site's own, or its client's),
// creating and deleting freezes, and deciding, from them, whether a site's
// job may start now (schedule does the arithmetic, store persists).
// Check-ins ask Checkin; sites list and show ask Annotate.
package maint

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fault"
	"github.com/dropless/dropless/updateserver/internal/schedule"
	"github.com/dropless/dropless/updateserver/internal/store"
)

// Service manages windows and freezes.
type Service struct {
	Store *store.Store
	Now   func() time.Time
}

func (m *Service) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// validName checks a name against protocol.NamePattern.
func validName(kind, v string) error {
	if err := protocol.ValidName(kind, v); err != nil {
		return fault.Wrap(fault.Invalid, err)
	}
	return nil
}

// scope checks that exactly one of site and client is given.
func scope(site, client string) (kind, name string, err error) {
	switch {
	case (site == "") == (client == ""):
		return "", "", fault.New(fault.Invalid, "give exactly one of site or client")
	case site != "":
		return store.ScopeSite, site, validName("site", site)
	default:
		return store.ScopeClient, client, validName("client", client)
	}
}

// SetWindow stores the window of a site or a client. A site must be
// enrolled; a client need not have sites yet.
func (m *Service) SetWindow(ctx context.Context, req protocol.WindowRequest, actor string) (protocol.Window, error) {
	kind, name, err := scope(req.Site, req.Client)
	if err != nil {
		return protocol.Window{}, err
	}
	if _, err := schedule.Parse(req.Weekly, req.TZ); err != nil {
		return protocol.Window{}, fault.Wrap(fault.Invalid, err)
	}
	if req.TZ == "" {
		req.TZ = "UTC"
	}
	weekly := make([]string, len(req.Weekly))
	for i, w := range req.Weekly {
		weekly[i] = strings.Join(strings.Fields(w), " ")
	}
	if kind == store.ScopeSite {
		if _, err := m.Store.GetSite(ctx, name); errors.Is(err, store.ErrNotFound) {
			return protocol.Window{}, fault.New(fault.NotFound, "site %s is not enrolled: see sites list", name)
		} else if err != nil {
			return protocol.Window{}, err
		}
	}
	now := m.now()
	err = m.Store.SetWindow(ctx, now, kind, name, weekly, req.TZ, store.Audit{Actor: actor, Action: "window.set", Object: kind + " " + name,
		Detail: "weekly=" + strings.Join(weekly, "; ") + " tz=" + req.TZ})
	if err != nil {
		return protocol.Window{}, err
	}
	w := protocol.Window{Weekly: weekly, TZ: req.TZ, UpdatedAt: now.UTC(), UpdatedBy: actor}
	if kind == store.ScopeSite {
		w.Site = name
	} else {
		w.Client = name
	}
	return w, nil
}

// ClearWindow removes the window of a site or a client.
func (m *Service) ClearWindow(ctx context.Context, site, client, actor string) error {
	kind, name, err := scope(site, client)
	if err != nil {
		return err
	}
	err = m.Store.ClearWindow(ctx, m.now(), kind, name, store.Audit{Actor: actor, Action: "window.clear", Object: kind + " " + name})
	if errors.Is(err, store.ErrNotFound) {
		return fault.New(fault.NotFound, "%s %s has no window of its own: see window show", kind, name)
	}
	return err
}

// SiteWindow shows a site's window as of now.
func (m *Service) SiteWindow(ctx context.Context, site string) (protocol.SiteWindow, error) {
	st, err := m.Store.GetSite(ctx, site)
	if errors.Is(err, store.ErrNotFound) {
		return protocol.SiteWindow{}, fault.New(fault.NotFound, "site %s is not enrolled: see sites list", site)
	}
	if err != nil {
		return protocol.SiteWindow{}, err
	}
	now := m.now()
	out := protocol.SiteWindow{Site: st.Site, Client: st.Client, Freezes: []protocol.Freeze{}}
	var w *schedule.Window
	sw, err := m.Store.SiteWindow(ctx, st.Site, st.Client)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return out, err
	default:
		out.Window = &sw
		if w, err = schedule.Parse(sw.Weekly, sw.TZ); err != nil {
			return out, err
		}
	}
	freezes, err := m.Store.Freezes(ctx, now)
	if err != nil {
		return out, err
	}
	for _, f := range freezes {
		if f.Client == "" || f.Client == st.Client {
			out.Freezes = append(out.Freezes, f)
		}
	}
	out.Open = w.Open(now)
	if !out.Open {
		if n := w.NextOpen(now); !n.IsZero() {
			u := n.UTC()
			out.NextOpen = &u
			out.NextOpenLocal = n.In(w.Loc).Format("Mon 2006-01-02 15:04 MST")
		}
	} else if c := w.NextClose(now); !c.IsZero() {
		u := c.UTC()
		out.NextClose = &u
	}
	d := schedule.MayStart(now, w, st.Client, toSchedule(out.Freezes))
	out.MayStart, out.WaitReason = d.OK, d.Reason
	if !d.OK && !d.Next.IsZero() {
		u := d.Next.UTC()
		out.NextStart = &u
	}
	return out, nil
}

func toSchedule(fs []protocol.Freeze) []schedule.Freeze {
	out := make([]schedule.Freeze, len(fs))
	for i, f := range fs {
		out[i] = schedule.Freeze{ID: f.ID, Client: f.Client, From: f.From, To: f.To, Reason: f.Reason}
	}
	return out
}

// maxReason bounds a freeze's reason.
const maxReason = 500

// CreateFreeze stores a freeze.
func (m *Service) CreateFreeze(ctx context.Context, req protocol.FreezeRequest, actor string) (protocol.Freeze, error) {
	if req.Client != "" {
		if err := validName("client", req.Client); err != nil {
			return protocol.Freeze{}, err
		}
	}
	if req.From.IsZero() || req.To.IsZero() {
		return protocol.Freeze{}, fault.New(fault.Invalid, "give the freeze's from and to as RFC 3339 times (like 2025-12-20T00:00:00+01:00)")
	}
	if !req.To.After(req.From) {
		return protocol.Freeze{}, fault.New(fault.Invalid, "the freeze ends (%s) before it starts (%s): give a to after from", req.To.Format(time.RFC3339), req.From.Format(time.RFC3339))
	}
	now := m.now()
	if !req.To.After(now) {
		return protocol.Freeze{}, fault.New(fault.Invalid, "the freeze ends (%s) in the past: give a to in the future", req.To.Format(time.RFC3339))
	}
	reason := protocol.CleanText(strings.TrimSpace(req.Reason), maxReason, false)
	if reason == "" {
		return protocol.Freeze{}, fault.New(fault.Invalid, "give the freeze a reason (--reason): support sees it wherever a job waits")
	}
	f := protocol.Freeze{Client: req.Client, From: req.From.UTC(), To: req.To.UTC(), Reason: reason, CreatedAt: now.UTC(), CreatedBy: actor}
	object := "server-wide"
	if f.Client != "" {
		object = "client " + f.Client
	}
	id, err := m.Store.CreateFreeze(ctx, now, f, store.Audit{Actor: actor, Action: "freeze.create", Object: object,
		Detail: "from=" + f.From.Format(time.RFC3339) + " to=" + f.To.Format(time.RFC3339) + " reason=" + strconv.Quote(reason)})
	f.ID = id
	return f, err
}

// Freezes lists the freezes not yet ended.
func (m *Service) Freezes(ctx context.Context) ([]protocol.Freeze, error) {
	return m.Store.Freezes(ctx, m.now())
}

// DeleteFreeze removes a freeze.
func (m *Service) DeleteFreeze(ctx context.Context, id int64, actor string) error {
	err := m.Store.DeleteFreeze(ctx, m.now(), id, store.Audit{Actor: actor, Action: "freeze.delete", Object: "freeze " + strconv.FormatInt(id, 10)})
	if errors.Is(err, store.ErrNotFound) {
		return fault.New(fault.NotFound, "no freeze has ID %d: see freeze list", id)
	}
	return err
}

// Checkin says whether the site's job may start now: its window and the
// freezes that apply, except for a job made with --now (override), which
// starts whatever they say.
func Checkin(ctx context.Context, s *store.Store, now time.Time, site string, override bool) (protocol.WindowStatus, error) {
	if override {
		return protocol.WindowStatus{Open: true}, nil
	}
	client, err := s.SiteClient(ctx, site)
	if err != nil {
		return protocol.WindowStatus{Open: true}, err
	}
	d, err := decide(ctx, s, now, protocol.Site{Site: site, Client: client}, nil)
	if err != nil {
		return protocol.WindowStatus{Open: true}, err
	}
	return windowStatus(d), nil
}

// windowStatus is what a check-in's answer says of decision d.
func windowStatus(d schedule.Decision) protocol.WindowStatus {
	ws := protocol.WindowStatus{Open: d.OK}
	if !d.OK && !d.Next.IsZero() {
		n := d.Next.UTC()
		ws.NextOpen = &n
	}
	return ws
}

// view is what decide needs beyond the site: windows and freezes read
// once for many sites.
type view struct {
	windows map[string]*schedule.Window // "site NAME" / "client NAME"
	freezes []schedule.Freeze
}

func decide(ctx context.Context, s *store.Store, now time.Time, st protocol.Site, v *view) (schedule.Decision, error) {
	var w *schedule.Window
	var freezes []schedule.Freeze
	if v != nil {
		w = v.windows["site "+st.Site]
		if w == nil {
			w = v.windows["client "+st.Client]
		}
		freezes = v.freezes
	} else {
		sw, err := s.SiteWindow(ctx, st.Site, st.Client)
		if err == nil {
			// Stored windows were validated when set.
			w, _ = schedule.Parse(sw.Weekly, sw.TZ)
		} else if !errors.Is(err, store.ErrNotFound) {
			return schedule.Decision{}, err
		}
		fs, err := s.Freezes(ctx, now)
		if err != nil {
			return schedule.Decision{}, err
		}
		freezes = toSchedule(fs)
	}
	return schedule.MayStart(now, w, st.Client, freezes), nil
}

// loadView reads every window and the freezes at now, for decisions
// about many sites.
func loadView(ctx context.Context, s *store.Store, now time.Time) (*view, error) {
	all, err := s.Windows(ctx)
	if err != nil {
		return nil, err
	}
	fs, err := s.Freezes(ctx, now)
	if err != nil {
		return nil, err
	}
	v := &view{windows: map[string]*schedule.Window{}, freezes: toSchedule(fs)}
	for _, sw := range all {
		w, err := schedule.Parse(sw.Weekly, sw.TZ)
		if err != nil {
			continue // validated when set
		}
		if sw.Site != "" {
			v.windows["site "+sw.Site] = w
		} else {
			v.windows["client "+sw.Client] = w
		}
	}
	return v, nil
}

// CheckinMany is Checkin (without override) for many sites, each given
// with its client, reading the windows and freezes once.
func CheckinMany(ctx context.Context, s *store.Store, now time.Time, sites []protocol.Site) ([]protocol.WindowStatus, error) {
	out := make([]protocol.WindowStatus, len(sites))
	if len(sites) == 0 {
		return out, nil
	}
	v, err := loadView(ctx, s, now)
	if err != nil {
		return nil, err
	}
	for i, st := range sites {
		d, _ := decide(ctx, s, now, st, v) // no error with a view
		out[i] = windowStatus(d)
	}
	return out, nil
}

// Annotate sets each site's window_open, next_window and wait reason.
// next_window is when a job may next start: when one may start now, the
// opening after this one closes; "" when the site is always open.
func (m *Service) Annotate(ctx context.Context, sites []protocol.Site) error {
	if len(sites) == 0 {
		return nil
	}
	now := m.now()
	v, err := loadView(ctx, m.Store, now)
	if err != nil {
		return err
	}
	for i := range sites {
		st := &sites[i]
		d, _ := decide(ctx, m.Store, now, *st, v)
		st.WindowOpen, st.NextWindow, st.WaitReason = d.OK, "", ""
		if !d.OK {
			st.WaitReason = d.Reason
			if !d.Next.IsZero() {
				st.NextWindow = d.Next.UTC().Format(time.RFC3339)
			}
			continue
		}
		w := v.windows["site "+st.Site]
		if w == nil {
			w = v.windows["client "+st.Client]
		}
		if c := w.NextClose(now); !c.IsZero() {
			if n := w.NextOpen(c); !n.IsZero() {
				st.NextWindow = n.UTC().Format(time.RFC3339)
			}
		}
	}
	return nil
}
