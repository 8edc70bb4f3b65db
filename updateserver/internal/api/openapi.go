package api

// The server's routes and its API description are made from one list
// (Server.routes): the mux registers each route with its access check,
// and /api/v1/openapi.json describes the same routes, their parameters and
// the JSON they take and answer, with schemas generated from the Go types
// the handlers decode and encode. A route cannot be served without being
// described (TestOpenAPIDescribesEveryRoute also checks that no handler is
// registered around the list), and the CLI's tests validate every request
// and answer they make against the description (spectest).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/fleet"
)

// access says who may call a route.
type access int

const (
	// anyone (the zero value): the TUF repository, health, this
	// description, enrolling.
	_ access = iota
	// operator: a bearer operator token of at least route.role.
	operator
	// agent: a bearer agent credential; the handler acts on its site only.
	agent
)

// route is one endpoint: its pattern, who may call it, and what it takes
// and answers.
type route struct {
	// pattern is the http.ServeMux pattern, "METHOD /path/{param}".
	pattern string
	access  access
	// role is the least operator role an operator route needs.
	role    string
	summary string
	query   []param
	// body is a value of the JSON request body's type; nil when the
	// route takes none. rawBody names the media type of a body that is
	// not JSON (an upload).
	body    any
	rawBody string
	// status is the success status (200 when 0); resp a value of the
	// JSON answer's type, nil for none (204) or for rawResp.
	status  int
	resp    any
	rawResp string
	handler http.HandlerFunc
}

// param is a query parameter.
type param struct {
	name, desc string
	integer    bool
}

// revokedID is the answer of enroll-token revoke.
type revokedID struct {
	ID      int64 `json:"id"`
	Revoked bool  `json:"revoked"`
}

// healthStatus is the answer of /healthz.
type healthStatus struct {
	Status string `json:"status"`
}

// routes lists every endpoint of the server.
func (s *Server) routes() []route {
	v1 := protocol.APIVersion
	site := []param{{name: "site", desc: "a site's name"}, {name: "client", desc: "every site of a client"}}
	return []route{
		{pattern: "GET /healthz", summary: "The server answers and its store too", resp: healthStatus{}, handler: s.healthz},
		{pattern: "GET " + v1 + "/openapi.json", summary: "This description of the API", rawResp: "application/json", handler: s.openAPI},
		{pattern: "GET /metrics", access: s.metricsAccess(), role: protocol.RoleViewer, summary: "Prometheus metrics (text format); public with serve --metrics-public",
			rawResp: "text/plain", handler: s.metrics},
		{pattern: "GET /tuf/metadata/{name}", summary: "TUF metadata: N.root.json, timestamp.json, N.snapshot.json, N.targets.json", rawResp: "application/json", handler: s.tufMetadata},
		{pattern: "GET /tuf/targets/{path...}", summary: "A TUF target (a bundle), by its hash-prefixed name", rawResp: "application/octet-stream", handler: s.tufTarget},

		{pattern: "POST " + v1 + "/tokens", access: operator, role: protocol.RoleAdmin, summary: "Create an operator token",
			body: protocol.CreateTokenRequest{}, status: http.StatusCreated, resp: protocol.CreateTokenResponse{}, handler: s.createToken},
		{pattern: "GET " + v1 + "/tokens", access: operator, role: protocol.RoleAdmin, summary: "List operator tokens (never their secrets)",
			resp: []protocol.TokenInfo{}, handler: s.listTokens},
		{pattern: "POST " + v1 + "/tokens/{name}/revoke", access: operator, role: protocol.RoleAdmin, summary: "Revoke the live tokens of a name",
			resp: protocol.RevokeTokenResponse{}, handler: s.revokeToken},
		{pattern: "GET " + v1 + "/debug/pprof/{profile...}", access: operator, role: protocol.RoleAdmin,
			summary: "The Go runtime's profiles (net/http/pprof): profile (CPU), trace, heap, allocs, goroutine, block, mutex, threadcreate; empty for the index",
			query: []param{{name: "seconds", desc: "how long a CPU profile or trace runs (30)", integer: true}, {name: "debug", desc: "1 or 2: text instead of the protobuf", integer: true},
				{name: "gc", desc: "heap: 1 runs a garbage collection first", integer: true}},
			rawResp: "application/octet-stream", handler: s.pprofRoute},
		{pattern: "GET " + v1 + "/audit", access: operator, role: protocol.RoleAdmin, summary: "The audit log, newest first",
			query: []param{{name: "since", desc: "a duration back from now (24h) or an RFC 3339 time"}, {name: "actor", desc: "a token's name"},
				{name: "limit", desc: "entries per page", integer: true}, {name: "before", desc: "only entries older than this ID", integer: true}},
			resp: []protocol.AuditEntry{}, handler: s.auditLog},

		{pattern: "POST " + v1 + "/webhooks", access: operator, role: protocol.RoleAdmin, summary: "Create a webhook; the answer holds its secret, shown this once",
			body: protocol.CreateWebhookRequest{}, status: http.StatusCreated, resp: protocol.CreateWebhookResponse{}, handler: s.createWebhook},
		{pattern: "GET " + v1 + "/webhooks", access: operator, role: protocol.RoleAdmin, summary: "List webhooks with their last delivery status (never their secrets)",
			resp: []protocol.Webhook{}, handler: s.listWebhooks},
		{pattern: "DELETE " + v1 + "/webhooks/{id}", access: operator, role: protocol.RoleAdmin, summary: "Delete a webhook and the events still waiting for it",
			status: http.StatusNoContent, handler: s.deleteWebhook},

		{pattern: "POST " + v1 + "/uploads", access: operator, role: protocol.RoleRelease, summary: "Upload a bundle (.tar.gz) to publish",
			rawBody: "application/gzip", status: http.StatusCreated, resp: protocol.Upload{}, handler: s.upload},
		{pattern: "POST " + v1 + "/releases", access: operator, role: protocol.RoleRelease, summary: "Publish an uploaded bundle as a release",
			body: protocol.PublishRequest{}, status: http.StatusCreated, resp: protocol.Release{}, handler: s.publish},
		{pattern: "GET " + v1 + "/releases", access: operator, role: protocol.RoleViewer, summary: "List releases",
			query: []param{{name: "product"}, {name: "channel"}}, resp: []protocol.Release{}, handler: s.listReleases},
		{pattern: "GET " + v1 + "/releases/{product}/{version}", access: operator, role: protocol.RoleViewer, summary: "One release",
			resp: protocol.Release{}, handler: s.getRelease},
		{pattern: "POST " + v1 + "/releases/{product}/{version}/promote", access: operator, role: protocol.RoleRelease, summary: "Add a release to a channel",
			body: protocol.PromoteRequest{}, resp: protocol.Release{}, handler: s.promote},
		{pattern: "POST " + v1 + "/releases/{product}/{version}/yank", access: operator, role: protocol.RoleRelease, summary: "Withdraw a release",
			body: protocol.YankRequest{}, resp: protocol.Release{}, handler: s.yank},
		{pattern: "GET " + v1 + "/repo/targets", access: operator, role: protocol.RoleRelease, summary: "The signed targets metadata's targets (for offline checks)",
			resp: protocol.RepoTargets{}, handler: s.repoTargets},

		{pattern: "POST " + v1 + "/enroll-tokens", access: operator, role: protocol.RoleSupport, summary: "Create an enroll token for a client's agents",
			body: protocol.CreateEnrollTokenRequest{}, status: http.StatusCreated, resp: protocol.CreateEnrollTokenResponse{}, handler: s.createEnrollToken},
		{pattern: "GET " + v1 + "/enroll-tokens", access: operator, role: protocol.RoleSupport, summary: "List enroll tokens (never their secrets)",
			resp: []protocol.EnrollTokenInfo{}, handler: s.listEnrollTokens},
		{pattern: "POST " + v1 + "/enroll-tokens/{id}/revoke", access: operator, role: protocol.RoleSupport, summary: "Revoke an enroll token",
			resp: revokedID{}, handler: s.revokeEnrollToken},
		{pattern: "GET " + v1 + "/sites", access: operator, role: protocol.RoleViewer, summary: "List sites",
			query: []param{{name: "client"}, {name: "product"}}, resp: []protocol.Site{}, handler: s.listSites},
		{pattern: "GET " + v1 + "/sites/{site}", access: operator, role: protocol.RoleViewer, summary: "One site",
			resp: protocol.Site{}, handler: s.getSite},
		{pattern: "GET " + v1 + "/sites/{site}/history", access: operator, role: protocol.RoleViewer, summary: "A site's jobs with their events, newest first, a page at a time (Link rel=next)",
			query: []param{{name: "limit", desc: "jobs per page", integer: true}, {name: "before", desc: "only jobs older than this job ID"}},
			resp:  []protocol.Job{}, handler: s.history},
		{pattern: "POST " + v1 + "/offline-reports", access: operator, role: protocol.RoleSupport, summary: "Import the report of jobs an air-gapped site's agent ran from an air-gap file (signed by that agent) into the site's history",
			body: signedReportBody{}, resp: protocol.ImportReportResponse{}, handler: s.importReport},
		{pattern: "POST " + v1 + "/upgrades", access: operator, role: protocol.RoleSupport, summary: "Upgrade a site or a client's sites",
			body: protocol.UpgradeRequest{}, status: http.StatusCreated, resp: protocol.UpgradeResponse{}, handler: s.upgrade},
		{pattern: "GET " + v1 + "/sites/{site}/window", access: operator, role: protocol.RoleViewer, summary: "A site's maintenance window as of now",
			resp: protocol.SiteWindow{}, handler: s.siteWindow},
		{pattern: "PUT " + v1 + "/windows", access: operator, role: protocol.RoleSupport, summary: "Set a site's or a client's maintenance window",
			body: protocol.WindowRequest{}, resp: protocol.Window{}, handler: s.setWindow},
		{pattern: "DELETE " + v1 + "/windows", access: operator, role: protocol.RoleSupport, summary: "Remove a maintenance window",
			query: site, status: http.StatusNoContent, handler: s.clearWindow},
		{pattern: "PUT " + v1 + "/follows", access: operator, role: protocol.RoleSupport, summary: "Make a site, or a client's sites, follow a channel (with a pin)",
			body: protocol.FollowRequest{}, resp: protocol.FollowResponse{}, handler: s.follow},
		{pattern: "DELETE " + v1 + "/follows", access: operator, role: protocol.RoleSupport, summary: "Make a site, or a client's sites, follow no channel",
			query: site, resp: protocol.FollowResponse{}, handler: s.unfollow},
		{pattern: "POST " + v1 + "/freezes", access: operator, role: protocol.RoleSupport, summary: "Create a freeze",
			body: protocol.FreezeRequest{}, status: http.StatusCreated, resp: protocol.Freeze{}, handler: s.createFreeze},
		{pattern: "GET " + v1 + "/freezes", access: operator, role: protocol.RoleViewer, summary: "List the freezes not yet ended",
			resp: []protocol.Freeze{}, handler: s.listFreezes},
		{pattern: "DELETE " + v1 + "/freezes/{id}", access: operator, role: protocol.RoleSupport, summary: "Delete a freeze",
			status: http.StatusNoContent, handler: s.deleteFreeze},
		{pattern: "POST " + v1 + "/rollouts", access: operator, role: protocol.RoleSupport, summary: "Create a rollout: one release to many sites in waves (answered without its sites)",
			body: protocol.RolloutRequest{}, status: http.StatusCreated, resp: protocol.Rollout{}, handler: s.createRollout},
		{pattern: "GET " + v1 + "/rollouts", access: operator, role: protocol.RoleViewer, summary: "List rollouts, newest first (without their sites)",
			resp: []protocol.Rollout{}, handler: s.listRollouts},
		{pattern: "GET " + v1 + "/rollouts/{id}", access: operator, role: protocol.RoleViewer, summary: "One rollout with its waves and sites",
			resp: protocol.Rollout{}, handler: s.getRollout},
		{pattern: "POST " + v1 + "/rollouts/{id}/pause", access: operator, role: protocol.RoleSupport, summary: "Pause a rollout: no new site starts",
			resp: protocol.Rollout{}, handler: s.rolloutAction((*fleet.Fleet).PauseRollout)},
		{pattern: "POST " + v1 + "/rollouts/{id}/resume", access: operator, role: protocol.RoleSupport, summary: "Resume a paused rollout (its failures still counted)",
			resp: protocol.Rollout{}, handler: s.rolloutAction((*fleet.Fleet).ResumeRollout)},
		{pattern: "POST " + v1 + "/rollouts/{id}/cancel", access: operator, role: protocol.RoleSupport, summary: "Cancel a rollout: jobs not started are cancelled at once",
			resp: protocol.Rollout{}, handler: s.rolloutAction((*fleet.Fleet).CancelRollout)},

		{pattern: "POST " + v1 + "/agent/enroll", summary: "An agent enrolls with an enroll token and gets its credential",
			body: protocol.EnrollRequest{}, status: http.StatusCreated, resp: protocol.EnrollResponse{}, handler: s.enroll},
		{pattern: "POST " + v1 + "/agent/checkin", access: agent, summary: "An agent reports its state and gets its assignment (long-polls with ?wait=)",
			query: []param{{name: "wait", desc: "hold the answer up to this long (e.g. 30s) until there is something new"}},
			body:  protocol.CheckinRequest{}, resp: protocol.CheckinResponse{}, handler: s.checkin},
		{pattern: "POST " + v1 + "/agent/events", access: agent, summary: "An agent sends the events of its jobs",
			body: protocol.EventsRequest{}, resp: protocol.EventsResponse{}, handler: s.agentEvents},
		{pattern: "POST " + v1 + "/agent/offline-report", access: agent, summary: "An agent sends the signed report of the jobs it ran from an air-gap file",
			body: signedReportBody{}, resp: protocol.ImportReportResponse{}, handler: s.agentReport},
	}
}

// handle registers rt on mux behind its access check.
func (s *Server) handle(mux *http.ServeMux, rt route) {
	var h http.Handler = rt.handler
	switch rt.access {
	case operator:
		h = s.auth(rt.handler, rt.role)
	case agent:
		h = s.agentAuth(rt.handler)
	}
	mux.Handle(rt.pattern, s.Metrics.Route(rt.pattern, h))
}

// metricsAccess is who may read /metrics: anyone with MetricsPublic, else
// an operator token.
func (s *Server) metricsAccess() access {
	if s.MetricsPublic {
		return 0
	}
	return operator
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, no-cache")
	w.Write(s.spec)
}

// Description returns the server's API description (what
// /api/v1/openapi.json answers).
func Description() ([]byte, error) { return buildSpec((&Server{}).routes()) }

var pathParam = regexp.MustCompile(`\{([a-z]+)(\.\.\.)?\}`)

// buildSpec describes routes as an OpenAPI 3.0 document.
func buildSpec(routes []route) ([]byte, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:       "updateserver",
			Version:     protocol.APIVersion,
			Description: "The update server's operator API (bearer operator tokens, checked against the role each operation names in x-role), its agent API (bearer agent credentials) and its public TUF repository. Errors are JSON {\"error\":{\"code\",\"message\"}}.",
		},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			Schemas: openapi3.Schemas{},
			SecuritySchemes: openapi3.SecuritySchemes{
				"operatorToken":   {Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer").WithDescription("An operator token (updateserver token create)")},
				"agentCredential": {Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer").WithDescription("The credential an agent got when it enrolled")},
			},
		},
	}
	gen := openapi3gen.NewGenerator(
		openapi3gen.CreateComponentSchemas(openapi3gen.ExportComponentSchemasOptions{ExportComponentSchemas: true, ExportTopLevelSchema: true}),
		openapi3gen.SchemaCustomizer(customizeSchema),
	)
	schema := func(v any) (*openapi3.SchemaRef, error) {
		return gen.NewSchemaRefForValue(v, doc.Components.Schemas)
	}
	errSchema, err := schema(protocol.ErrorResponse{})
	if err != nil {
		return nil, err
	}
	for _, rt := range routes {
		method, path, ok := strings.Cut(rt.pattern, " ")
		if !ok {
			return nil, fmt.Errorf("route %q has no method", rt.pattern)
		}
		op := openapi3.NewOperation()
		op.Summary = rt.summary
		op.OperationID = operationID(method, path)
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			op.AddParameter(openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema()))
		}
		path = pathParam.ReplaceAllString(path, "{$1}")
		for _, q := range rt.query {
			s := openapi3.NewStringSchema()
			if q.integer {
				s = openapi3.NewIntegerSchema()
			}
			op.AddParameter(openapi3.NewQueryParameter(q.name).WithDescription(q.desc).WithSchema(s))
		}
		switch rt.access {
		case operator:
			op.Security = openapi3.NewSecurityRequirements().With(openapi3.NewSecurityRequirement().Authenticate("operatorToken"))
			op.Extensions = map[string]any{"x-role": rt.role}
		case agent:
			op.Security = openapi3.NewSecurityRequirements().With(openapi3.NewSecurityRequirement().Authenticate("agentCredential"))
		default:
			op.Security = openapi3.NewSecurityRequirements()
		}
		switch {
		case rt.body != nil:
			ref, err := schema(rt.body)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rt.pattern, err)
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).WithJSONSchemaRef(ref)}
		case rt.rawBody != "":
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).
				WithContent(openapi3.NewContentWithSchema(openapi3.NewStringSchema().WithFormat("binary"), []string{rt.rawBody}))}
		}
		status := rt.status
		if status == 0 {
			status = http.StatusOK
		}
		ok200 := openapi3.NewResponse().WithDescription(http.StatusText(status))
		switch {
		case rt.resp != nil:
			ref, err := schema(rt.resp)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rt.pattern, err)
			}
			ok200.WithJSONSchemaRef(ref)
		case rt.rawResp != "":
			ok200.WithContent(openapi3.NewContentWithSchema(openapi3.NewStringSchema().WithFormat("binary"), []string{rt.rawResp}))
		}
		op.Responses = openapi3.NewResponses(
			openapi3.WithStatus(status, &openapi3.ResponseRef{Value: ok200}),
			openapi3.WithName("default", openapi3.NewResponse().WithDescription("An error").WithJSONSchemaRef(errSchema)),
		)
		doc.AddOperation(path, method, op)
	}
	return json.MarshalIndent(doc, "", "  ")
}

// operationID names an operation: "GET /api/v1/sites/{site}/history" is
// "getSitesSiteHistory".
func operationID(method, path string) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(method))
	path = strings.TrimPrefix(path, protocol.APIVersion)
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '/' || r == '-' || r == '.' || r == '{' || r == '}' }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

// customizeSchema makes the generated schemas say what encoding/json
// really writes: a struct's fields without omitempty or omitzero are
// always there (required), and a nil slice or map is written as null.
func customizeSchema(_ string, t reflect.Type, tag reflect.StructTag, s *openapi3.Schema) error {
	if name, _, _ := strings.Cut(tag.Get("json"), ","); name == "-" {
		return &openapi3gen.ExcludeSchemaSentinel{}
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Map:
		if t.Elem().Kind() != reflect.Uint8 || t.Kind() == reflect.Map {
			s.Nullable = true
		}
	case reflect.Struct:
		s.Required = requiredFields(t)
	}
	return nil
}

// requiredFields lists the JSON names of t's fields that encoding/json
// always writes.
func requiredFields(t reflect.Type) []string {
	var req []string
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || (f.Anonymous && f.Tag.Get("json") == "") {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		o := strings.Split(opts, ",")
		if slices.Contains(o, "omitempty") || slices.Contains(o, "omitzero") {
			continue
		}
		req = append(req, name)
	}
	return req
}
