package arm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/google/uuid"
)

// APIVersions is the set of api-versions one provider accepts.
type APIVersions struct {
	Provider string
	Versions []string // oldest first
}

// Has reports whether v is supported (case-insensitively, as ARM does).
func (a APIVersions) Has(v string) bool {
	for _, s := range a.Versions {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}

// Newest is the newest supported version.
func (a APIVersions) Newest() string { return a.Versions[len(a.Versions)-1] }

// Request is what a handler sees of an ARM call.
type Request struct {
	HTTP      *http.Request
	Route     *Route
	Params    map[string]string // pattern parameter -> value, keys as written in the pattern
	Canonical string            // the path with the pattern's literal casing
	// ID is ResourceID() parsed, every name on it checked against its
	// type's naming rule; zero when that path is no resource id (the
	// tenant-wide operation list, a scope that is not an id).
	ID         ResourceID
	APIVersion string
	Body       []byte
	Principal  auth.Principal
	// Auxiliary are the principals of the x-ms-authorization-auxiliary
	// tokens, each verified like the main token; a handler decides what
	// they may approve.
	Auxiliary []auth.Principal
	RequestID string
	BaseURL   string // scheme://host of this server, for links
	resourceN int    // segments of Canonical up to the last parameter
}

// Param returns the value of a pattern parameter.
func (r *Request) Param(name string) string { return r.Params[name] }

// Query returns a query parameter, matching its name case-insensitively.
func (r *Request) Query(name string) string {
	for k, v := range r.HTTP.URL.Query() {
		if strings.EqualFold(k, name) && len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// ResourceID is the canonical path up to its last parameter: the resource
// a GET, PUT, DELETE or POST action addresses, or the scope a list is in.
func (r *Request) ResourceID() string {
	segs := strings.Split(r.Canonical, "/")
	if r.resourceN+1 > len(segs) {
		return r.Canonical
	}
	return strings.Join(segs[:r.resourceN+1], "/")
}

// Decode unmarshals the JSON body into v. A missing or malformed body is a
// 400 InvalidRequestContent.
func (r *Request) Decode(v any) error {
	if len(strings.TrimSpace(string(r.Body))) == 0 {
		return errs.E(errs.Invalid, "InvalidRequestContent", "The request content was invalid and could not be deserialized: the request body is empty.")
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return errs.E(errs.Invalid, "InvalidRequestContent", "The request content was invalid and could not be deserialized: %s.", jsonProblem(err))
	}
	return nil
}

func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at offset %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		return fmt.Sprintf("'%s' must be a JSON %s, not %s", typ.Field, typ.Type.Kind(), typ.Value)
	default:
		return err.Error()
	}
}

// Response is what a handler returns on success.
type Response struct {
	Status int
	Body   any // marshalled as JSON; nil writes no body
	Header http.Header
}

// OK is a 200 with body.
func OK(body any) *Response { return &Response{Status: http.StatusOK, Body: body} }

// Created is a 201 with body.
func Created(body any) *Response { return &Response{Status: http.StatusCreated, Body: body} }

// NoContent is a 204.
func NoContent() *Response { return &Response{Status: http.StatusNoContent} }

// WithHeader sets a header and returns resp.
func (resp *Response) WithHeader(k, v string) *Response {
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	resp.Header.Set(k, v)
	return resp
}

// HandlerFunc handles one route.
type HandlerFunc func(ctx context.Context, r *Request) (*Response, error)

// Route is one ARM operation.
type Route struct {
	Method   string
	Pattern  string
	Versions APIVersions
	// Action is the RBAC action the caller needs, e.g.
	// Microsoft.Resources/subscriptions/resourceGroups/read.
	Action string
	// Scope returns the scope Action is checked at; nil means ResourceID.
	Scope   func(r *Request) string
	Handler HandlerFunc
	// Public routes need no token (health, metadata).
	Public bool
	// AnyPrincipal routes need a valid token but no role (provider
	// operation lists, which ARM serves to every signed-in caller).
	AnyPrincipal bool

	segs []segment
}

type segment struct {
	literal string // canonical casing; "" for a parameter
	param   string
	multi   bool // {name...}: one or more segments
}

func parsePattern(p string) []segment {
	var segs []segment
	for _, s := range strings.Split(strings.Trim(p, "/"), "/") {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			name := s[1 : len(s)-1]
			multi := strings.HasSuffix(name, "...")
			segs = append(segs, segment{param: strings.TrimSuffix(name, "..."), multi: multi})
			continue
		}
		segs = append(segs, segment{literal: s})
	}
	return segs
}

// match matches path segments against the route, filling params and the
// canonical segments. It returns the number of canonical segments up to and
// including the last parameter.
func (rt *Route) match(path []string) (map[string]string, []string, int, bool) {
	params := map[string]string{}
	var canon []string
	last := 0
	var try func(si, pi int) bool
	try = func(si, pi int) bool {
		if si == len(rt.segs) {
			return pi == len(path)
		}
		if pi >= len(path) {
			return false
		}
		s := rt.segs[si]
		switch {
		case s.literal != "":
			if !strings.EqualFold(s.literal, path[pi]) {
				return false
			}
			canon = append(canon, s.literal)
			if try(si+1, pi+1) {
				return true
			}
			canon = canon[:len(canon)-1]
			return false
		case s.multi:
			// Longest first would swallow the suffix literals; try shortest.
			for n := 1; pi+n <= len(path); n++ {
				params[s.param] = strings.Join(path[pi:pi+n], "/")
				canon = append(canon, path[pi:pi+n]...)
				mark := last
				last = len(canon)
				if try(si+1, pi+n) {
					return true
				}
				last = mark
				canon = canon[:len(canon)-n]
			}
			delete(params, s.param)
			return false
		default:
			if path[pi] == "" {
				return false
			}
			params[s.param] = path[pi]
			canon = append(canon, path[pi])
			mark := last
			last = len(canon)
			if try(si+1, pi+1) {
				return true
			}
			last = mark
			canon = canon[:len(canon)-1]
			delete(params, s.param)
			return false
		}
	}
	if !try(0, 0) {
		return nil, nil, 0, false
	}
	return params, canon, last, true
}

// Authenticator turns a bearer token into a principal.
type Authenticator interface {
	Verify(ctx context.Context, raw string) (auth.Principal, error)
}

// Authorizer decides whether a principal may perform action at scope. It
// returns nil or an errs.Forbidden error.
type Authorizer interface {
	Authorize(ctx context.Context, p auth.Principal, action, scope string) error
}

// Observer sees every finished request (metrics).
type Observer func(route string, method string, status int, elapsed time.Duration)

// Router is the ARM front door.
type Router struct {
	routes  []*Route
	authn   Authenticator
	authz   Authorizer
	log     *slog.Logger
	observe Observer
	maxBody int64
	shapes  *shapeTable
}

// NewRouter returns a router that authenticates with authn and authorizes
// with authz.
func NewRouter(authn Authenticator, authz Authorizer, log *slog.Logger, observe Observer) *Router {
	if observe == nil {
		observe = func(string, string, int, time.Duration) {}
	}
	return &Router{authn: authn, authz: authz, log: log, observe: observe, maxBody: 4 << 20, shapes: loadShapes()}
}

// Handle adds a route. Earlier routes win when two match.
func (rt *Router) Handle(r Route) {
	if r.Handler == nil || r.Pattern == "" || r.Method == "" {
		panic("arm: incomplete route " + r.Method + " " + r.Pattern)
	}
	if !r.Public && ((r.Action == "" && !r.AnyPrincipal) || len(r.Versions.Versions) == 0) {
		panic("arm: route without action or api-versions: " + r.Method + " " + r.Pattern)
	}
	r.segs = parsePattern(r.Pattern)
	rt.routes = append(rt.routes, &r)
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	raw := strings.Split(p, "/")
	out := make([]string, len(raw))
	for i, s := range raw {
		if u, err := url.PathUnescape(s); err == nil {
			out[i] = u
		} else {
			out[i] = s
		}
	}
	return out
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// ServeHTTP implements the front door.
func (rt *Router) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	start := time.Now()
	requestID := uuid.NewString()
	correlation := hr.Header.Get("x-ms-correlation-request-id")
	if _, err := uuid.Parse(correlation); err != nil {
		correlation = requestID
	}
	h := w.Header()
	h.Set("x-ms-request-id", requestID)
	h.Set("x-ms-correlation-request-id", correlation)
	if c := hr.Header.Get("x-ms-client-request-id"); c != "" && len(c) <= 128 {
		h.Set("x-ms-client-request-id", c)
	}
	rec := &statusRecorder{ResponseWriter: w}
	log := rt.log.With("request_id", requestID, "method", hr.Method, "path", hr.URL.Path)
	routeName := "unmatched"
	defer func() {
		if p := recover(); p != nil {
			log.Error("handler panic", "panic", p, "stack", string(debug.Stack()))
			if rec.status == 0 {
				WriteError(rec, errors.New("panic"))
			}
		}
		elapsed := time.Since(start)
		rt.observe(routeName, hr.Method, rec.status, elapsed)
		log.Info("request", "route", routeName, "status", rec.status, "ms", float64(elapsed.Microseconds())/1000)
	}()

	path := splitPath(hr.URL.EscapedPath())
	route, params, canon, last, methodMismatch := rt.find(hr.Method, path)
	if route != nil {
		routeName = route.Pattern
	}
	if route != nil && route.Public {
		rt.serve(rec, hr, route, &Request{HTTP: hr, Route: route, Params: params, RequestID: requestID}, log)
		return
	}

	apiVersion := ""
	for k, v := range hr.URL.Query() {
		if strings.EqualFold(k, "api-version") && len(v) > 0 {
			apiVersion = v[0]
		}
	}
	// Every answer to a route asked in a version, refusals included, is in
	// the shape of that version (or of its neighbour, for an unknown one).
	var out http.ResponseWriter = rec
	if route != nil && apiVersion != "" {
		if op, _ := rt.shapes.shapeFor(route, apiVersion); op != nil {
			out = &shapingWriter{ResponseWriter: rec, table: rt.shapes, op: op, values: textsAt(route.Versions.Provider, apiVersion)}
		}
	}
	principal, err := rt.authenticate(hr)
	if err != nil {
		WriteError(out, err)
		return
	}
	log = log.With("principal", principal.ObjectID)
	auxiliary, err := rt.authenticateAuxiliary(hr)
	if err != nil {
		WriteError(out, err)
		return
	}
	if err := checkPath(path); err != nil {
		WriteError(out, err)
		return
	}
	if err := checkQuery(hr.URL.RawQuery); err != nil {
		WriteError(out, err)
		return
	}
	if route == nil {
		if len(methodMismatch) > 0 {
			h.Set("Allow", strings.Join(methodMismatch, ", "))
			WriteError(out, errs.E(errs.MethodNotAllowed, "MethodNotAllowed",
				"The requested resource does not support http method '%s'.", hr.Method))
			return
		}
		WriteError(out, errs.E(errs.NotFound, "InvalidResourceType",
			"The resource type could not be found: no operation matches the path '%s'.", hr.URL.Path))
		return
	}
	if apiVersion == "" {
		WriteError(out, errs.E(errs.Invalid, "MissingApiVersionParameter",
			"The api-version query parameter (?api-version=) is required for all requests."))
		return
	}
	if !route.Versions.Has(apiVersion) {
		WriteError(out, errs.E(errs.Invalid, "InvalidApiVersionParameter",
			"The api-version '%s' is invalid. The supported versions for '%s' are '%s'.",
			apiVersion, route.Versions.Provider, strings.Join(route.Versions.Versions, ",")).WithTarget("api-version"))
		return
	}
	req := &Request{
		HTTP: hr, Route: route, Params: params, Canonical: "/" + strings.Join(canon, "/"),
		APIVersion: apiVersion, Principal: principal, Auxiliary: auxiliary, RequestID: requestID,
		BaseURL: baseURL(hr), resourceN: last,
	}
	// Names are checked before the authorizer sees the scope and before a
	// handler looks anything up: a hostile name is refused the same way
	// whether or not something by that name exists.
	if id, err := ParseResourceID(req.ResourceID()); err == nil {
		if err := validateNames(id); err != nil {
			WriteError(out, err)
			return
		}
		req.ID = id
	}
	scope := req.ResourceID()
	if route.Scope != nil {
		scope = route.Scope(req)
	}
	if rt.authz != nil && !route.AnyPrincipal {
		if err := rt.authz.Authorize(hr.Context(), principal, route.Action, scope); err != nil {
			WriteError(out, err)
			return
		}
	}
	rt.serve(out, hr, route, req, log)
}

func (rt *Router) serve(w http.ResponseWriter, hr *http.Request, route *Route, req *Request, log *slog.Logger) {
	if hr.Body != nil {
		body, err := io.ReadAll(io.LimitReader(hr.Body, rt.maxBody+1))
		if err != nil {
			WriteError(w, errs.E(errs.Invalid, "InvalidRequestContent", "The request body could not be read."))
			return
		}
		if int64(len(body)) > rt.maxBody {
			WriteError(w, errs.E(errs.Invalid, "RequestContentTooLarge", "The request content is larger than %d bytes.", rt.maxBody))
			return
		}
		if !utf8.Valid(body) {
			WriteError(w, errs.E(errs.Invalid, "InvalidRequestContent", "The request content was invalid and could not be deserialized: it is not valid UTF-8."))
			return
		}
		if req.APIVersion != "" {
			if body, err = rt.shapes.readRequest(route, req.APIVersion, body); err != nil {
				WriteError(w, err)
				return
			}
		}
		req.Body = body
	}
	resp, err := route.Handler(hr.Context(), req)
	if err != nil {
		if errs.KindOf(err) == errs.Internal {
			log.Error("internal error", "err", err)
		}
		WriteError(w, err)
		return
	}
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if resp.Body == nil {
		w.WriteHeader(resp.Status)
		return
	}
	writeJSON(w, resp.Status, resp.Body)
}

func (rt *Router) find(method string, path []string) (*Route, map[string]string, []string, int, []string) {
	var allowed []string
	for _, r := range rt.routes {
		params, canon, last, ok := r.match(path)
		if !ok {
			continue
		}
		if r.Method == method {
			return r, params, canon, last, nil
		}
		allowed = append(allowed, r.Method)
	}
	return nil, nil, nil, 0, allowed
}

func (rt *Router) authenticate(hr *http.Request) (auth.Principal, error) {
	h := hr.Header.Get("Authorization")
	if h == "" {
		return auth.Principal{}, errs.E(errs.Unauthenticated, "AuthenticationFailed",
			"Authentication failed. The 'Authorization' header is missing.")
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return auth.Principal{}, errs.E(errs.Unauthenticated, "AuthenticationFailed",
			"Authentication failed. The 'Authorization' header is provided in an invalid format.")
	}
	return rt.authn.Verify(hr.Context(), strings.TrimSpace(token))
}

// authenticateAuxiliary verifies the tokens of x-ms-authorization-auxiliary
// ("Bearer a, Bearer b", at most three, as ARM takes). A token that does not
// verify fails the request as a bad main token would: an approval that
// cannot be checked must not be silently dropped.
func (rt *Router) authenticateAuxiliary(hr *http.Request) ([]auth.Principal, error) {
	h := strings.TrimSpace(hr.Header.Get("x-ms-authorization-auxiliary"))
	if h == "" {
		return nil, nil
	}
	parts := strings.Split(h, ",")
	if len(parts) > 3 {
		return nil, errs.E(errs.Unauthenticated, "AuthenticationFailed",
			"Authentication failed. The 'x-ms-authorization-auxiliary' header carries %d tokens; at most 3 are allowed.", len(parts))
	}
	out := make([]auth.Principal, 0, len(parts))
	for _, part := range parts {
		scheme, token, ok := strings.Cut(strings.TrimSpace(part), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return nil, errs.E(errs.Unauthenticated, "AuthenticationFailed",
				"Authentication failed. The 'x-ms-authorization-auxiliary' header is provided in an invalid format.")
		}
		p, err := rt.authn.Verify(hr.Context(), strings.TrimSpace(token))
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func baseURL(hr *http.Request) string {
	scheme := "https"
	if hr.TLS == nil {
		scheme = "http"
	}
	return scheme + "://" + hr.Host
}

// Link returns an absolute URL on this server for path with api-version set.
func (r *Request) Link(path string) string {
	return r.BaseURL + path + "?api-version=" + url.QueryEscape(r.APIVersion)
}

// PageArgs reads $skipToken and $top. The token is opaque to clients.
func (r *Request) PageArgs() (after string, limit int, err error) {
	limit = 100
	if t := r.Query("$top"); t != "" {
		n, convErr := strconv.Atoi(t)
		if convErr != nil || n < 1 || n > 1000 {
			return "", 0, errs.E(errs.Invalid, "InvalidQueryParameterValue", "The value '%s' of '$top' must be an integer from 1 to 1000.", t).WithTarget("$top")
		}
		limit = n
	}
	if tok := r.Query("$skipToken"); tok != "" {
		raw, decErr := base64.RawURLEncoding.DecodeString(tok)
		if decErr != nil {
			return "", 0, errs.E(errs.Invalid, "InvalidSkipToken", "The '$skipToken' value is not one this server issued.").WithTarget("$skipToken")
		}
		// The token is a key this server issued; anything else must not
		// reach the store, which cannot hold invalid UTF-8 or NUL.
		if !utf8.Valid(raw) || strings.ContainsRune(string(raw), 0) {
			return "", 0, errs.E(errs.Invalid, "InvalidSkipToken", "The '$skipToken' value is not one this server issued.").WithTarget("$skipToken")
		}
		after = string(raw)
	}
	return after, limit, nil
}

// ListBody is the body of every list response.
type ListBody[T any] struct {
	Value    []T    `json:"value"`
	NextLink string `json:"nextLink,omitempty"`
}

// List returns a 200 list page; next is the store's continuation key, ""
// on the last page. The nextLink repeats the request's query with a new
// $skipToken, so filters and $top carry over.
func List[T any](r *Request, items []T, next string) *Response {
	if items == nil {
		items = []T{}
	}
	body := ListBody[T]{Value: items}
	if next != "" {
		q := url.Values{}
		for k, v := range r.HTTP.URL.Query() {
			if !strings.EqualFold(k, "$skipToken") {
				q[k] = v
			}
		}
		q.Set("$skipToken", base64.RawURLEncoding.EncodeToString([]byte(next)))
		body.NextLink = r.BaseURL + r.HTTP.URL.EscapedPath() + "?" + q.Encode()
	}
	return OK(body)
}
