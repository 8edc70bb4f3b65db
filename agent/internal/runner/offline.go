package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dropless/dropless/agent/internal/appctl"
	"github.com/dropless/dropless/agent/internal/config"
	"github.com/dropless/dropless/agent/internal/engine"
	"github.com/dropless/dropless/agent/internal/fetch"
	"github.com/dropless/dropless/pkg/agentapi"
	"github.com/dropless/dropless/pkg/airgap"
	"github.com/dropless/dropless/pkg/buildinfo"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/pkg/versions"
)

// airgapHost is the host of the URLs the TUF client reads an air-gap file
// through: never resolved, the transport serves the file's entries.
const airgapHost = "airgap.invalid"

// OfflineResult is what ApplyOffline did.
type OfflineResult struct {
	Manifest  airgap.Manifest
	Jobs      []protocol.JobStatus
	Installed string
	// Report is the signed report of the jobs (nil when none ran).
	Report []byte
}

// Succeeded reports whether every job ran and succeeded.
func (r OfflineResult) Succeeded() bool {
	for _, j := range r.Jobs {
		if j.Result != protocol.ResultSucceeded {
			return false
		}
	}
	return true
}

// ApplyOffline applies the air-gap file at file, without the network: it
// reads the file defensively into a directory of data_dir, gives the
// file's metadata and bundles to the agent's own TUF client (which
// verifies them against the pinned root and keeps its trusted metadata in
// data_dir/tuf, as online), then runs each hop the file lists that is
// newer than the installed version as a job of the same engine, with the
// same trust checks, journal and rollback. It stops at the first job that
// does not succeed.
//
// A file that is damaged, of another product, or whose metadata does not
// verify (wrong root, tampered, expired) is refused before any job
// starts. The jobs' events stay in the journal: the agent delivers them
// (as a report, Runner.deliverReports) when it next reaches the server,
// and Result.Report carries them for a --report file.
func ApplyOffline(ctx context.Context, cfg *config.Config, file string, log *slog.Logger) (OfflineResult, error) {
	var res OfflineResult
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return res, err
	}
	f, err := os.Open(file)
	if err != nil {
		return res, fmt.Errorf("open the air-gap file: %w", err)
	}
	defer f.Close()
	dir, err := os.MkdirTemp(cfg.DataDir, "airgap-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	m, err := airgap.Read(f, dir, airgap.DefaultLimits())
	if err != nil {
		return res, fmt.Errorf("%s: %w", file, err)
	}
	res.Manifest = m
	// The manifest is a request: a mismatch refuses, a match proves
	// nothing (the engine checks the signed targets).
	if m.Product != cfg.Product {
		return res, fmt.Errorf("%s is for product %s, this agent manages %s: export a file with --product %s", file, m.Product, cfg.Product, cfg.Product)
	}
	fc, err := fetch.New(fetch.Config{
		MetadataURL: "http://" + airgapHost + "/metadata/",
		TargetsURL:  "http://" + airgapHost + "/targets/",
		MetadataDir: filepath.Join(cfg.DataDir, TUFDir),
		RootSHA256:  cfg.RootSHA256,
		HTTPClient:  &http.Client{Transport: dirTransport{dir: dir}},
		Log:         log,
	})
	if err != nil {
		return res, err
	}
	// Verify the metadata before anything else: a file that does not
	// verify against the pinned root starts no job.
	if err := fc.Bootstrap(ctx); err != nil {
		return res, fmt.Errorf("%s: %w: the file is from another update server than the one root_sha256 pins", file, err)
	}
	if err := fc.Refresh(ctx); err != nil {
		return res, fmt.Errorf("%s: the file's metadata does not verify against the pinned root: %w: export the file again from the update server whose root root_sha256 pins (updateserver root sha256), and apply it before it expires", file, err)
	}
	app, err := appctl.New(cfg.App, cfg.InstallDir, log)
	if err != nil {
		return res, err
	}
	r := New(cfg, log)
	ecfg := EngineConfig(cfg, app, &tufFetcher{c: fc, log: log, bootMu: &sync.Mutex{}, cache: newBundleCache(cfg)}, log)
	ecfg.HealthOverride = r.healthOverride
	if err := os.MkdirAll(cfg.InstallDir, 0o755); err != nil {
		return res, fmt.Errorf("create %s: %w", cfg.InstallDir, err)
	}
	eng, err := engine.Open(ctx, ecfg)
	if err != nil {
		return res, err
	}
	defer eng.Close()
	if err := eng.Recover(ctx); err != nil {
		return res, fmt.Errorf("an unfinished job could not be recovered first: %w", err)
	}
	for _, hop := range m.Hops {
		installed := eng.Status().InstalledVersion
		if installed != "" && versions.Compare(hop.Version, installed) <= 0 && hop.Version != m.Version {
			continue // an earlier hop this site is past already
		}
		a := protocol.Assignment{JobID: newOfflineJobID(), Product: cfg.Product, Version: hop.Version, Target: hop.Target, From: installed}
		log.Info("offline job starting", "job", a.JobID, "from", installed, "to", hop.Version)
		js, err := eng.Run(ctx, a)
		if err != nil {
			return res, err
		}
		res.Jobs = append(res.Jobs, js)
		if js.Result != protocol.ResultSucceeded {
			break
		}
	}
	res.Installed = eng.Status().InstalledVersion
	var ids []string
	for _, j := range res.Jobs {
		ids = append(ids, j.ID)
	}
	if res.Report, err = offlineReport(ctx, cfg, eng, ids); err != nil {
		return res, fmt.Errorf("write the report: %w", err)
	}
	return res, nil
}

func newOfflineJobID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return airgap.JobIDPrefix + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// offlineReport is the signed report of the journal's jobs ids, signed with
// the agent's credential when it has one.
func offlineReport(ctx context.Context, cfg *config.Config, eng *engine.Engine, ids []string) ([]byte, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rep := airgap.Report{Site: cfg.Site, Client: cfg.Client, Product: cfg.Product, AgentVersion: buildinfo.String(),
		InstalledVersion: eng.Status().InstalledVersion, WrittenAt: time.Now().UTC()}
	for _, id := range ids {
		st, target, err := eng.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		evs, err := eng.Events(ctx, id)
		if err != nil {
			return nil, err
		}
		rep.Jobs = append(rep.Jobs, airgap.ReportJob{ID: id, From: st.From, To: st.To, Target: target, Result: st.Result, Events: evs})
	}
	cred, err := ReadCredential(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	key := ""
	if cred != "" {
		key = airgap.CredentialKey(cred)
	}
	return airgap.Sign(rep, key)
}

// deliverReports sends, as reports, the ended offline jobs among evs
// (apply-offline ran them: the server learns of them only this way) and
// returns the other events. A report the server refuses for good is
// logged with what to do; its events are not sent again.
func (r *Runner) deliverReports(ctx context.Context, evs []protocol.Event) ([]protocol.Event, error) {
	var rest []protocol.Event
	var ids []string
	seen := map[string]bool{}
	for _, e := range evs {
		if !strings.HasPrefix(e.JobID, airgap.JobIDPrefix) {
			rest = append(rest, e)
			continue
		}
		if !seen[e.JobID] {
			seen[e.JobID] = true
			ids = append(ids, e.JobID)
		}
	}
	for _, id := range ids {
		st, _, err := r.engine.Job(ctx, id)
		if err != nil {
			return nil, err
		}
		if st.Result == "" {
			continue // unfinished: Recover ends it first
		}
		rep, err := offlineReport(ctx, r.cfg, r.engine, []string{id})
		if err != nil {
			return nil, err
		}
		resp, err := r.api.SendReport(ctx, rep)
		switch {
		case isPermanent(err):
			r.log.Error("the server refused the report of an offline job: import the --report file apply-offline wrote with updateserver sites import-report", "job", id, "err", err)
		case err != nil:
			return nil, err
		default:
			r.log.Info("offline job reported", "job", id, "new_events", resp.Events)
		}
		all, err := r.engine.Events(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := r.engine.MarkDelivered(ctx, all); err != nil {
			return nil, err
		}
	}
	return rest, nil
}

// isPermanent reports whether the server refused a request for good (a
// 4xx other than 401, 408 and 429).
func isPermanent(err error) bool {
	var ae *agentapi.Error
	if !errors.As(err, &ae) {
		return false
	}
	s := ae.Status
	return s >= 400 && s < 500 && s != http.StatusUnauthorized && s != http.StatusRequestTimeout && s != http.StatusTooManyRequests
}

// dirTransport serves GET requests for http://airgap.invalid/<path> from
// dir/<path>, as a static mirror would: 404 for a missing file.
type dirTransport struct{ dir string }

func (t dirTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	resp := &http.Response{Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}}
	p := path.Clean("/" + req.URL.Path)
	if req.URL.Host != airgapHost || req.Method != http.MethodGet || strings.Contains(p, "..") {
		resp.StatusCode, resp.Status = http.StatusForbidden, "403 Forbidden"
		resp.Body = http.NoBody
		return resp, nil
	}
	f, err := os.Open(filepath.Join(t.dir, filepath.FromSlash(p)))
	if err != nil {
		resp.StatusCode, resp.Status = http.StatusNotFound, "404 Not Found"
		resp.Body = http.NoBody
		return resp, nil
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		resp.StatusCode, resp.Status = http.StatusNotFound, "404 Not Found"
		resp.Body = http.NoBody
		return resp, nil
	}
	resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
	resp.ContentLength = fi.Size()
	resp.Header.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	resp.Body = f
	return resp, nil
}
