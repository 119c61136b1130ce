package caddybff

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
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
	fieldStepUp  = "step_up"
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
	Require requireList `json:"require,omitempty"`

	// Extra are the application's other fields, by name, as JSON values:
	// an icon, a description, a team. In JSON they sit beside the fields
	// above, not under a key of their own.
	Extra map[string]json.RawMessage `json:"-"`
}

// compiledApp is an application ready to serve.
type compiledApp struct {
	name  string
	route string
	reqs  scopeauthz.Requirements
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

	now := time.Now()
	body := make([]byte, 0, min(a.bodyCap, 64<<10))
	body = append(body, `{"applications":[`...)
	n := 0
	for i := range a.apps {
		app := &a.apps[i]
		if allowed, _ := app.reqs.CheckScopes(id != nil, scopes); !allowed {
			continue
		}
		if n > 0 {
			body = append(body, ',')
		}
		if su, ok := app.reqs.StepUp(); ok && !su.Met(id, now) {
			// Listed, so the shell can offer it, with what opening it
			// takes: a login that delivers the step-up.
			body = appendStepUp(body, app.body, su, oidcauth.StepUpLoginURLFor(r, su, app.route))
		} else {
			body = append(body, app.body...)
		}
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

// appendStepUp appends an application's JSON object with a `step_up`
// member: `{"acr_values": "mfa", "max_age": 600, "login_url": "..."}`.
func appendStepUp(body, app []byte, su oidcauth.StepUp, login string) []byte {
	m := map[string]any{"login_url": login}
	if su.ACR != "" {
		m["acr_values"] = su.ACR
	}
	if su.MaxAge >= 0 {
		m["max_age"] = int64(su.MaxAge / time.Second)
	}
	b, _ := json.Marshal(m)                  // cannot fail: strings and numbers
	body = append(body, app[:len(app)-1]...) // the object without its }
	body = append(body, `,"step_up":`...)
	body = append(body, b...)
	return append(body, '}')
}

// requireList is `require` in JSON: a space-separated string or an array
// of strings, not empty (an application without requirements leaves
// `require` out).
type requireList []string

// UnmarshalJSON decodes a requireList; its errors name the field.
func (rl *requireList) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil && string(b) != "null" {
		*rl = strings.Fields(s)
	} else {
		var list []json.RawMessage
		if err := json.Unmarshal(b, &list); err != nil || list == nil {
			return fmt.Errorf("%s: want a string or an array of strings, got %s", fieldRequire, kindOf(b))
		}
		out := make([]string, len(list))
		for i, v := range list {
			if string(v) == "null" || json.Unmarshal(v, &out[i]) != nil {
				return fmt.Errorf("%s: item %d: want a string, got %s", fieldRequire, i+1, kindOf(v))
			}
		}
		*rl = out
	}
	if len(*rl) == 0 {
		return fmt.Errorf("%s: empty: leave require out for authenticated, or say anonymous", fieldRequire)
	}
	return nil
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

// appFields is App without its JSON methods, for the standard decoder.
type appFields App

// decode is UnmarshalJSON without the application's name in errors. It
// decodes twice: into a map, for the name (so later errors can give it),
// the fields that are not ours (Extra) and the checks the standard decoder
// does not make (null, misspelt names, which it would match ignoring
// case); then into the struct, for the known fields and their types.
func (app *App) decode(b []byte) error {
	*app = App{}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil || fields == nil {
		return fmt.Errorf("an application is a JSON object, not %s", kindOf(b))
	}
	if raw, ok := fields[fieldName]; ok {
		if string(raw) == "null" || json.Unmarshal(raw, &app.Name) != nil {
			return fmt.Errorf("%s: want a string, got %s", fieldName, kindOf(raw))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		raw := fields[k]
		switch k {
		case fieldName, fieldTitle, fieldEntry, fieldRoute:
			if string(raw) == "null" {
				return fmt.Errorf("%s: want a string, got null", k)
			}
		case fieldRequire:
			if string(raw) == "null" {
				return fmt.Errorf("%s: want a string or an array of strings, got null", k)
			}
		default:
			if err := checkExtraName(k); err != nil {
				return err
			}
			if app.Extra == nil {
				app.Extra = make(map[string]json.RawMessage)
			}
			app.Extra[k] = raw
		}
	}
	name, extra := app.Name, app.Extra
	err := json.Unmarshal(b, (*appFields)(app))
	app.Name, app.Extra = name, extra
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && te.Field != "" {
		return fmt.Errorf("%s: want a string, got %s", te.Field, kindOfType(te.Value))
	}
	return err
}

// kindOf names the kind of a JSON value for errors: "a number", "null".
func kindOf(raw []byte) string {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return "nothing"
	}
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

// kindOfType names the JSON kind json.UnmarshalTypeError reports.
func kindOfType(value string) string {
	switch value {
	case "bool":
		return "a boolean"
	case "array", "object":
		return "an " + value
	case "string", "number":
		return "a " + value
	}
	return value
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
	for _, k := range slices.Sorted(maps.Keys(app.Extra)) {
		if err := checkExtraName(k); err != nil {
			return compiledApp{}, err
		}
		if !json.Valid(app.Extra[k]) {
			return compiledApp{}, fmt.Errorf("extra field %q is not valid JSON", k)
		}
	}

	// The answer's object: the extra fields beside the known ones, title
	// defaulted to the name.
	out := make(map[string]any, 4+len(app.Extra))
	for k, v := range app.Extra {
		out[k] = v
	}
	out[fieldName], out[fieldTitle], out[fieldEntry], out[fieldRoute] = app.Name, cmp.Or(app.Title, app.Name), app.Entry, app.Route
	body, err := json.Marshal(out)
	if err != nil {
		return compiledApp{}, err
	}
	return compiledApp{name: app.Name, route: app.Route, reqs: reqs, body: body}, nil
}

// checkExtraName refuses extra fields that look like a misspelt known
// field: a `Require` or `requires` passed through would silently leave the
// application at the default requirement, authenticated.
func checkExtraName(k string) error {
	for _, f := range [...]string{fieldName, fieldTitle, fieldEntry, fieldRoute, fieldRequire, fieldStepUp} {
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
