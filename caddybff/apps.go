package caddybff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-bff/caddy-bff/internal/problem"
	"github.com/caddy-bff/caddy-bff/internal/requestid"
	"github.com/caddy-bff/caddy-bff/oidcauth"
	"github.com/caddy-bff/caddy-bff/scopeauthz"
)

// maxAppsFileSize bounds the applications file: it is read whole at every
// config load, and its entries are held in memory.
const maxAppsFileSize = 1 << 20

// maxAppNameLen bounds an application's name.
const maxAppNameLen = 128

// The fields of an application the handler reads itself; every other
// field passes through to the shell.
const (
	fieldName    = "name"
	fieldTitle   = "title"
	fieldEntry   = "entry"
	fieldRoute   = "route"
	fieldRequire = "require"
)

// Apps tells the portal's shell which micro-frontends the user may load:
// it answers GET (and HEAD) with `{"applications": [...]}`, the
// applications whose requirements the user meets, in the order they are
// configured (the file's first, then the app blocks), each with `name`,
// `title`, `entry`, `route` and any extra fields configured for it.
// `require` itself is not sent. Other methods get 405. It ends the request.
//
// It must run after oidc_auth. Without an identity (anonymous, on a path
// oidc_auth lets through as public) the list holds only the applications
// that require `anonymous`. The answer depends on the session, so it
// carries `Cache-Control: no-store` and `Vary: Cookie`.
//
// The file is read when the config loads (so `caddy validate` checks it);
// a config reload reads it again. Caddy skips a reload whose config is
// unchanged, so after editing only the file, use `caddy reload --force`.
type Apps struct {
	// File is the path of a JSON file holding `{"applications": [...]}` or
	// a bare array of applications, each an object with the fields of App
	// (`require` a string or an array). Placeholders are resolved when the
	// config loads. The file may be at most 1 MiB; a missing or malformed
	// file is a config error naming the file and the application.
	File string `json:"file,omitempty"`

	// Claim names the claim holding the user's scopes, as scope_authz's
	// claim does: a space-separated string or an array of strings; a
	// dotted name reaches into nested objects. Default: `scope`.
	Claim string `json:"claim,omitempty"`

	// Applications are listed after the file's. Names must be unique
	// across both.
	Applications []App `json:"applications,omitempty"`

	logger *zap.Logger
	apps   []compiledApp
	// bodyCap is the size of the answer listing every application.
	bodyCap int
}

// App is one micro-frontend. In JSON (the file and the handler's config)
// it is an object with the fields below; any other field is kept in Extra
// and sent to the shell unchanged.
type App struct {
	// Name identifies the application: 1 to 128 characters, no white space
	// or control characters, unique. Required.
	Name string `json:"name"`

	// Title is what the shell shows. Default: Name.
	Title string `json:"title,omitempty"`

	// Entry is the URL of the application's module, which the shell
	// imports: a path on this site (`/apps/recipes/index.js`) or an
	// absolute http or https URL. Required.
	Entry string `json:"entry"`

	// Route is the shell's route for the application, a path starting
	// with `/`. Required.
	Route string `json:"route"`

	// Require are the requirements the user must meet to see the
	// application, in scope_authz's syntax: scopes, `a|b` for either,
	// `authenticated`, or `anonymous` alone. Every one must hold. In JSON a
	// space-separated string or an array of strings. Default:
	// `authenticated`.
	Require []string `json:"require,omitempty"`

	// Extra are the application's other fields, by name, as JSON values:
	// an icon, a description, a team. In JSON they sit beside the fields
	// above, not under a key of their own.
	Extra map[string]json.RawMessage `json:"-"`
}

// compiledApp is an application ready to serve.
type compiledApp struct {
	name string
	reqs scopeauthz.Requirements
	// body is the application's JSON in the answer.
	body []byte
}

// CaddyModule returns the Caddy module information.
func (*Apps) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.bff_apps",
		New: func() caddy.Module { return new(Apps) },
	}
}

// Provision reads the file and compiles every application, their
// requirements and their JSON.
func (a *Apps) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	var (
		apps []compiledApp
		seen = make(map[string]string) // name → where it was defined
	)
	add := func(where string, app *App) error {
		c, err := app.compile()
		if err != nil {
			return fmt.Errorf("bff_apps: %s: %w", where, err)
		}
		if prev, dup := seen[c.name]; dup {
			return fmt.Errorf("bff_apps: %s: name %q is taken by %s", where, c.name, prev)
		}
		seen[c.name] = where
		apps = append(apps, c)
		return nil
	}

	if a.File != "" {
		path, err := caddy.NewReplacer().ReplaceOrErr(a.File, true, true)
		if err != nil {
			return fmt.Errorf("bff_apps: file %q: %w", a.File, err)
		}
		list, err := readAppsFile(path)
		if err != nil {
			return fmt.Errorf("bff_apps: %w", err)
		}
		for i := range list {
			if err := add(path+": "+fileAppLabel(i, list[i].Name), &list[i]); err != nil {
				return err
			}
		}
	}
	for i := range a.Applications {
		if err := add(fmt.Sprintf("app %q", a.Applications[i].Name), &a.Applications[i]); err != nil {
			return err
		}
	}

	a.apps = apps
	a.bodyCap = len(`{"applications":[]}`) + 1
	for _, c := range apps {
		a.bodyCap += len(c.body) + 1
	}
	if len(apps) == 0 && a.File != "" {
		a.logger.Warn("no applications in file: the shell will load none", zap.String("file", a.File))
	}
	a.logger.Debug("applications loaded", zap.Int("count", len(apps)))
	return nil
}

// Validate checks the configuration.
func (a *Apps) Validate() error {
	if a.File == "" && len(a.Applications) == 0 {
		return errors.New("bff_apps: no applications: give a file or app blocks")
	}
	if err := scopeauthz.CheckClaim(a.Claim); err != nil {
		return fmt.Errorf("bff_apps: claim %q: %w", a.Claim, err)
	}
	return nil
}

// ServeHTTP writes the applications the user may load.
func (a *Apps) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	reqID := requestid.Ensure(w, r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Error(w, r, http.StatusMethodNotAllowed, "the application list answers GET and HEAD only")
		return nil
	}

	id := oidcauth.IdentityFrom(r)
	var scopes []string
	if id != nil {
		scopes = scopeauthz.ScopesFrom(id.Claims, id.Scopes, a.Claim)
	}

	body := make([]byte, 0, min(a.bodyCap, 64<<10))
	body = append(body, `{"applications":[`...)
	n := 0
	for i := range a.apps {
		app := &a.apps[i]
		if allowed, _ := app.reqs.Check(id != nil, scopes); !allowed {
			continue
		}
		if n > 0 {
			body = append(body, ',')
		}
		body = append(body, app.body...)
		n++
	}
	body = append(body, "]}\n"...)

	if ce := a.logger.Check(zapcore.DebugLevel, "applications listed"); ce != nil {
		sub := ""
		if id != nil {
			sub = id.Subject
		}
		ce.Write(zap.String("request_id", reqID), zap.String("sub", sub),
			zap.Int("allowed", n), zap.Int("configured", len(a.apps)))
	}

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Cookie")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// readAppsFile reads and decodes an applications file. Errors name the
// file, and the application (by position and name) when one is at fault.
func readAppsFile(path string) ([]App, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading applications file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAppsFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading applications file %s: %w", path, err)
	}
	if len(data) > maxAppsFileSize {
		return nil, fmt.Errorf("%s: applications file is larger than %d bytes", path, maxAppsFileSize)
	}
	return parseAppsFile(path, data)
}

// parseAppsFile decodes an applications file's content: an object with
// just an "applications" array, or a bare array.
func parseAppsFile(path string, data []byte) ([]App, error) {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")) // a UTF-8 BOM some editors write
	if !json.Valid(data) {
		var v any
		return nil, fmt.Errorf("%s: %s", path, jsonError(data, json.Unmarshal(data, &v)))
	}
	var raws []json.RawMessage
	switch firstByte(data) {
	case '[':
		if err := json.Unmarshal(data, &raws); err != nil {
			return nil, fmt.Errorf("%s: %s", path, jsonError(data, err))
		}
	case '{':
		var top map[string]json.RawMessage
		if err := json.Unmarshal(data, &top); err != nil {
			return nil, fmt.Errorf("%s: %s", path, jsonError(data, err))
		}
		for _, k := range slices.Sorted(maps.Keys(top)) {
			if k != "applications" {
				return nil, fmt.Errorf("%s: unknown field %q: the file holds {\"applications\": [...]} or a bare array", path, k)
			}
		}
		list, ok := top["applications"]
		if !ok || firstByte(list) != '[' {
			return nil, fmt.Errorf("%s: want an \"applications\" array", path)
		}
		if err := json.Unmarshal(list, &raws); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		return nil, fmt.Errorf("%s: want {\"applications\": [...]} or an array of applications", path)
	}
	apps := make([]App, len(raws))
	for i, raw := range raws {
		if err := apps[i].decode(raw); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, fileAppLabel(i, apps[i].Name), err)
		}
	}
	return apps, nil
}

// fileAppLabel names the i-th application of a file in errors.
func fileAppLabel(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("application %d", i+1)
	}
	return fmt.Sprintf("application %d (%q)", i+1, name)
}

// firstByte is the first byte of a JSON value that is not white space, or
// 0.
func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// jsonError describes a decoding error with its line and column.
func jsonError(data []byte, err error) string {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	off := int64(-1)
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return "invalid JSON: " + err.Error()
	}
	// Offset counts the bytes read, the offending one included.
	at := max(off-1, 0)
	before := data[:at]
	line := bytes.Count(before, []byte("\n")) + 1
	col := at - int64(bytes.LastIndexByte(before, '\n'))
	return fmt.Sprintf("invalid JSON at line %d, column %d: %v", line, col, err)
}

// UnmarshalJSON decodes an application: the known fields, checked for
// their types, and every other field into Extra. `require` may be a
// space-separated string or an array of strings.
func (app *App) UnmarshalJSON(b []byte) error {
	if err := app.decode(b); err != nil {
		if app.Name != "" {
			return fmt.Errorf("application %q: %w", app.Name, err)
		}
		return fmt.Errorf("application: %w", err)
	}
	return nil
}

// decode is UnmarshalJSON without the application's name in errors.
func (app *App) decode(b []byte) error {
	*app = App{}
	if c := firstByte(b); c != '{' {
		return fmt.Errorf("an application is a JSON object, not %s", jsonKind(c))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	// The name first, so that errors about the other fields can name it.
	if raw, ok := fields[fieldName]; ok {
		if err := json.Unmarshal(raw, &app.Name); err != nil || firstByte(raw) != '"' {
			return fmt.Errorf("%s: want a string, got %s", fieldName, jsonKind(firstByte(raw)))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		raw := fields[k]
		var dst *string
		switch k {
		case fieldName:
			continue
		case fieldTitle:
			dst = &app.Title
		case fieldEntry:
			dst = &app.Entry
		case fieldRoute:
			dst = &app.Route
		case fieldRequire:
			req, err := decodeRequire(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", fieldRequire, err)
			}
			app.Require = req
			continue
		default:
			if err := checkExtraName(k); err != nil {
				return err
			}
			if app.Extra == nil {
				app.Extra = make(map[string]json.RawMessage)
			}
			app.Extra[k] = raw
			continue
		}
		if firstByte(raw) != '"' {
			return fmt.Errorf("%s: want a string, got %s", k, jsonKind(firstByte(raw)))
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// decodeRequire accepts a space-separated string or an array of strings,
// not empty: an application without requirements leaves `require` out.
func decodeRequire(raw json.RawMessage) ([]string, error) {
	var out []string
	switch firstByte(raw) {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, err
		}
		out = strings.Fields(s)
	case '[':
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, err
		}
		for i, v := range list {
			var s string
			if firstByte(v) != '"' || json.Unmarshal(v, &s) != nil {
				return nil, fmt.Errorf("item %d: want a string, got %s", i+1, jsonKind(firstByte(v)))
			}
			out = append(out, s)
		}
	default:
		return nil, fmt.Errorf("want a string or an array of strings, got %s", jsonKind(firstByte(raw)))
	}
	if len(out) == 0 {
		return nil, errors.New("empty: leave require out for authenticated, or say anonymous")
	}
	return out, nil
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	case 0:
		return "nothing"
	}
	return "a number"
}

// MarshalJSON encodes the application as UnmarshalJSON reads it, with the
// extra fields beside the known ones.
func (app App) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 5+len(app.Extra))
	for k, v := range app.Extra {
		m[k] = v
	}
	m[fieldName] = app.Name
	if app.Title != "" {
		m[fieldTitle] = app.Title
	}
	m[fieldEntry] = app.Entry
	m[fieldRoute] = app.Route
	if len(app.Require) > 0 {
		m[fieldRequire] = app.Require
	}
	return json.Marshal(m)
}

// compile checks the application and builds what serving it needs.
func (app *App) compile() (compiledApp, error) {
	if err := checkAppName(app.Name); err != nil {
		return compiledApp{}, err
	}
	if app.Entry == "" {
		return compiledApp{}, errors.New("entry is required (the URL of the application's module)")
	}
	if err := checkEntry(app.Entry); err != nil {
		return compiledApp{}, fmt.Errorf("entry %q: %w", app.Entry, err)
	}
	if app.Route == "" {
		return compiledApp{}, errors.New("route is required (a path starting with /)")
	}
	if err := checkRoute(app.Route); err != nil {
		return compiledApp{}, fmt.Errorf("route %q: %w", app.Route, err)
	}
	if !utf8.ValidString(app.Title) {
		return compiledApp{}, errors.New("title is not valid UTF-8")
	}
	require := app.Require
	if len(require) == 0 {
		require = []string{scopeauthz.Authenticated}
	}
	reqs, err := scopeauthz.ParseRequirements(require)
	if err != nil {
		return compiledApp{}, fmt.Errorf("require: %w", err)
	}
	extraKeys := slices.Sorted(maps.Keys(app.Extra))
	for _, k := range extraKeys {
		if err := checkExtraName(k); err != nil {
			return compiledApp{}, err
		}
		if !json.Valid(app.Extra[k]) {
			return compiledApp{}, fmt.Errorf("extra field %q is not valid JSON", k)
		}
	}

	title := app.Title
	if title == "" {
		title = app.Name
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range [...]struct{ k, v string }{
		{fieldName, app.Name}, {fieldTitle, title}, {fieldEntry, app.Entry}, {fieldRoute, app.Route},
	} {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, f.k)
		b.WriteByte(':')
		writeJSONString(&b, f.v)
	}
	for _, k := range extraKeys {
		b.WriteByte(',')
		writeJSONString(&b, k)
		b.WriteByte(':')
		// Valid above; Compact only drops insignificant white space.
		if err := json.Compact(&b, app.Extra[k]); err != nil {
			return compiledApp{}, fmt.Errorf("extra field %q: %w", k, err)
		}
	}
	b.WriteByte('}')
	return compiledApp{name: app.Name, reqs: reqs, body: b.Bytes()}, nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	q, _ := json.Marshal(s) // a string always encodes
	b.Write(q)
}

// checkExtraName refuses extra fields that look like a misspelt known
// field: a `Require` or `requires` passed through would silently leave the
// application at the default requirement, authenticated.
func checkExtraName(k string) error {
	for _, f := range [...]string{fieldName, fieldTitle, fieldEntry, fieldRoute, fieldRequire} {
		if k == f {
			return fmt.Errorf("extra field %q is a field of its own", k)
		}
		if strings.EqualFold(k, f) {
			return fmt.Errorf("field %q: did you mean %q? (fields are lower case)", k, f)
		}
	}
	if strings.EqualFold(k, fieldRequire+"s") || strings.EqualFold(k, fieldRequire+"d") {
		return fmt.Errorf("field %q: did you mean %q?", k, fieldRequire)
	}
	return nil
}

func checkAppName(name string) error {
	switch {
	case name == "":
		return errors.New("name is required")
	case len(name) > maxAppNameLen:
		return fmt.Errorf("name is longer than %d bytes", maxAppNameLen)
	case !utf8.ValidString(name):
		return errors.New("name is not valid UTF-8")
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("name %q contains white space or control characters", name)
	}
	return nil
}

// badURLChar reports characters that never belong in an entry or route
// as written: white space, controls, and backslashes (which browsers read
// as slashes in some URLs).
func badURLChar(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsControl(r) || r == '\\'
}

// checkEntry accepts a path on this site or an absolute http(s) URL: the
// shell imports it, so never a javascript: or data: URL.
func checkEntry(entry string) error {
	if !utf8.ValidString(entry) || strings.ContainsFunc(entry, badURLChar) {
		return errors.New("contains white space, control characters or backslashes")
	}
	if strings.HasPrefix(entry, "/") {
		if strings.HasPrefix(entry, "//") {
			return errors.New("a scheme-relative URL: write the scheme, or a path on this site")
		}
		if _, err := url.Parse(entry); err != nil {
			return errors.New("not a valid URL path")
		}
		return nil
	}
	u, err := url.Parse(entry)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil {
		return errors.New("want a path on this site (/apps/x/index.js) or an absolute http(s) URL")
	}
	return nil
}

// checkRoute accepts a path of the shell.
func checkRoute(route string) error {
	if !strings.HasPrefix(route, "/") || strings.HasPrefix(route, "//") {
		return errors.New("must start with a single /")
	}
	if !utf8.ValidString(route) || strings.ContainsFunc(route, badURLChar) {
		return errors.New("contains white space, control characters or backslashes")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Apps)(nil)
	_ caddy.Validator             = (*Apps)(nil)
	_ caddyhttp.MiddlewareHandler = (*Apps)(nil)
	_ caddyfile.Unmarshaler       = (*Apps)(nil)
	_ json.Marshaler              = App{}
	_ json.Unmarshaler            = (*App)(nil)
)
