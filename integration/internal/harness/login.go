package harness

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// ErrLoginRejected is returned (wrapped, with the page's message) when the
// provider answers the submitted login form with the form again.
var ErrLoginRejected = errors.New("provider rejected the login")

// maxHops bounds the redirects one login may take.
const maxHops = 20

// NewClient returns an HTTP client like a browser tab: a cookie jar
// (which, like browsers, sends Secure cookies to 127.0.0.1 over http and
// does not separate cookies by port), a 30s timeout, and no automatic
// redirects, so tests see every 302. Login and LoginToCallback follow
// redirects themselves whatever the client's policy.
func NewClient(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("cookie jar: %v", err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Login signs in as a browser would: it GETs startURL (e.g.
// http://127.0.0.1:PORT/auth/login?return_to=/x), follows the redirects to
// the provider, fills in and submits the provider's HTML login form (its
// action, method and hidden fields read from the page), and follows the
// redirects back through the gateway's callback. It returns the final,
// non-redirect response (the page return_to named), body unread; the
// caller closes it. Cookies land in client's jar. The test fails if any
// step does.
func Login(t testing.TB, client *http.Client, startURL, username, password string) *http.Response {
	t.Helper()
	resp, _, err := TryLogin(client, startURL, username, password, false)
	if err != nil {
		t.Fatalf("login as %s from %s: %v", username, startURL, err)
	}
	return resp
}

// LoginToCallback is Login that stops when the provider sends the browser
// back to the relying party: it returns that redirect target (the
// callback URL with code and state, or error and state) without
// requesting it, so tests can replay, alter or forge callbacks.
func LoginToCallback(t testing.TB, client *http.Client, startURL, username, password string) *url.URL {
	t.Helper()
	_, cb, err := TryLogin(client, startURL, username, password, true)
	if err != nil {
		t.Fatalf("login as %s from %s: %v", username, startURL, err)
	}
	return cb
}

// TryLogin is the error-returning core of Login and LoginToCallback. With
// stopAtCallback it returns the callback URL and a nil response; otherwise
// the final response and a nil URL. A rejected password gives an error
// wrapping ErrLoginRejected.
func TryLogin(client *http.Client, startURL, username, password string, stopAtCallback bool) (*http.Response, *url.URL, error) {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	u, err := url.Parse(startURL)
	if err != nil {
		return nil, nil, fmt.Errorf("start url: %w", err)
	}
	method, body := http.MethodGet, ""
	var prev *url.URL // the page that led here, for Sec-Fetch-Site and Origin
	submitted := false
	for hop := 0; hop < maxHops; hop++ {
		req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
		if err != nil {
			return nil, nil, err
		}
		browserHeaders(req, prev)
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if prev != nil {
				req.Header.Set("Origin", prev.Scheme+"://"+prev.Host)
			}
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", method, redact(u), err)
		}

		if isRedirect(resp.StatusCode) {
			loc, err := resp.Location()
			drain(resp)
			if err != nil {
				return nil, nil, fmt.Errorf("%s %s: %d without a valid Location: %w", method, redact(u), resp.StatusCode, err)
			}
			if stopAtCallback && isCallback(loc) {
				return nil, loc, nil
			}
			prev, u, method, body = u, loc, http.MethodGet, ""
			continue
		}

		if form, ok, err := loginForm(resp, u); err != nil {
			return nil, nil, err
		} else if ok {
			if submitted {
				return nil, nil, fmt.Errorf("%w: %s", ErrLoginRejected, form.message)
			}
			submitted = true
			values, err := form.fill(username, password)
			if err != nil {
				return nil, nil, err
			}
			prev, u = u, form.action
			method = form.method
			if method == http.MethodGet {
				u.RawQuery = values.Encode()
				body = ""
			} else {
				body = values.Encode()
			}
			continue
		} else if resp.Body == nil {
			return nil, nil, fmt.Errorf("%s %s: empty response", method, redact(u))
		}

		// A final page that is not a login form.
		if stopAtCallback {
			b := readSome(resp)
			return nil, nil, fmt.Errorf("%s %s answered %d before any callback: %s", method, redact(u), resp.StatusCode, b)
		}
		if !submitted {
			b := readSome(resp)
			return nil, nil, fmt.Errorf("%s %s answered %d without reaching a login form: %s", method, redact(u), resp.StatusCode, b)
		}
		return resp, nil, nil
	}
	return nil, nil, fmt.Errorf("more than %d redirects from %s", maxHops, startURL)
}

func isRedirect(code int) bool {
	switch code {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// isCallback reports whether a redirect target is an authorization
// response (RFC 6749 4.1.2): state with code or error.
func isCallback(u *url.URL) bool {
	q := u.Query()
	return q.Has("state") && (q.Has("code") || q.Has("error"))
}

// browserHeaders sets what a browser sends on a top-level navigation.
func browserHeaders(req *http.Request, prev *url.URL) {
	req.Header.Set("User-Agent", "caddy-bff-integration/1.0")
	req.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.Header.Set("Sec-Fetch-User", "?1")
	req.Header.Set("Sec-Fetch-Site", fetchSite(prev, req.URL))
}

// fetchSite approximates Sec-Fetch-Site: a site is scheme and host (ports
// do not count), and for an IP address the address itself.
func fetchSite(from, to *url.URL) string {
	switch {
	case from == nil:
		return "none"
	case from.Scheme == to.Scheme && from.Host == to.Host:
		return "same-origin"
	case from.Scheme == to.Scheme && from.Hostname() == to.Hostname():
		return "same-site"
	default:
		return "cross-site"
	}
}

// redact drops the query, which may carry codes or state.
func redact(u *url.URL) string {
	c := *u
	c.RawQuery = ""
	return c.String()
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
}

func readSome(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
	return strings.TrimSpace(string(b))
}

type htmlForm struct {
	action  *url.URL
	method  string
	fields  []formField
	message string // visible text near the form, e.g. an error
}

type formField struct {
	name, typ, value, autocomplete string
}

// loginForm reads an HTML response and finds a form with a password
// field. ok is false, and the response left unread, when the response is
// not HTML; it is consumed otherwise.
func loginForm(resp *http.Response, base *url.URL) (*htmlForm, bool, error) {
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || resp.StatusCode >= 500 {
		return nil, false, nil
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if err != nil {
		return nil, false, err
	}
	// Put the body back for a caller that wants the page.
	resp.Body = io.NopCloser(strings.NewReader(string(raw)))
	doc, err := html.Parse(strings.NewReader(string(raw)))
	if err != nil {
		return nil, false, nil
	}
	found := firstForm(doc, base, (*htmlForm).hasPassword)
	if found == nil {
		return nil, false, nil
	}
	return found, true, nil
}

// firstForm returns the first form of the document (in document order)
// that ok accepts, or nil.
func firstForm(doc *html.Node, base *url.URL, ok func(*htmlForm) bool) *htmlForm {
	var found *htmlForm
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if found != nil {
			return
		}
		if n.Type == html.ElementNode && n.Data == "form" {
			if f := parseForm(n, base); f != nil && ok(f) {
				found = f
				return
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return found
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if strings.EqualFold(a.Key, key) {
			return a.Val
		}
	}
	return ""
}

func parseForm(n *html.Node, base *url.URL) *htmlForm {
	action, err := base.Parse(attr(n, "action")) // empty action: the page itself
	if err != nil {
		return nil
	}
	f := &htmlForm{action: action, method: strings.ToUpper(attr(n, "method"))}
	if f.method != http.MethodPost {
		f.method = http.MethodGet
	}
	var text []string
	var walk func(*html.Node)
	walk = func(c *html.Node) {
		if c.Type == html.ElementNode && c.Data == "input" && attr(c, "name") != "" {
			typ := strings.ToLower(attr(c, "type"))
			if typ == "" {
				typ = "text"
			}
			f.fields = append(f.fields, formField{
				name: attr(c, "name"), typ: typ, value: attr(c, "value"),
				autocomplete: strings.ToLower(attr(c, "autocomplete")),
			})
		}
		if c.Type == html.TextNode {
			if s := strings.TrimSpace(c.Data); s != "" {
				text = append(text, s)
			}
		}
		for cc := c.FirstChild; cc != nil; cc = cc.NextSibling {
			walk(cc)
		}
	}
	walk(n)
	f.message = strings.Join(text, " ")
	return f
}

func (f *htmlForm) hasPassword() bool {
	for _, fl := range f.fields {
		if fl.typ == "password" {
			return true
		}
	}
	return false
}

// fill keeps hidden and preset fields, puts the password into the
// password field and the username into the field marked
// autocomplete=username, else one named like a username, else the first
// text or email field.
func (f *htmlForm) fill(username, password string) (url.Values, error) {
	user := -1
	for i, fl := range f.fields {
		if fl.autocomplete == "username" {
			user = i
			break
		}
	}
	if user < 0 {
		for i, fl := range f.fields {
			n := strings.ToLower(fl.name)
			if n == "username" || n == "login" || n == "email" || n == "user" {
				user = i
				break
			}
		}
	}
	if user < 0 {
		for i, fl := range f.fields {
			if fl.typ == "text" || fl.typ == "email" {
				user = i
				break
			}
		}
	}
	if user < 0 {
		return nil, errors.New("login form has no username field")
	}
	v := url.Values{}
	for i, fl := range f.fields {
		switch {
		case i == user:
			v.Add(fl.name, username)
		case fl.typ == "password":
			v.Add(fl.name, password)
		case fl.typ == "submit" || fl.typ == "button" || fl.typ == "checkbox" || fl.typ == "radio":
			// not sent unless chosen; the example's form has none
		default:
			v.Add(fl.name, fl.value)
		}
	}
	return v, nil
}

// PageForm reads the first form of an HTML page (such as the gateway's
// logout page, which submits its form by itself): its action resolved
// against base, its method, and the values of its hidden fields.
func PageForm(body string, base *url.URL) (action *url.URL, method string, fields url.Values, err error) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return nil, "", nil, err
	}
	f := firstForm(doc, base, func(*htmlForm) bool { return true })
	if f == nil {
		return nil, "", nil, errors.New("the page has no form with a valid action")
	}
	fields = url.Values{}
	for _, fl := range f.fields {
		if fl.typ == "hidden" {
			fields.Add(fl.name, fl.value)
		}
	}
	return f.action, f.method, fields, nil
}
