package testop

import (
	"crypto/rand"
	"encoding/hex"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// Provider sessions and OpenID Connect Front-Channel Logout 1.0.
//
// Each successful password login starts a provider session: a random sid
// that the ID tokens of that login carry (claim sid) and that the login's
// response sets as the HttpOnly cookie SessionCookie on the provider's
// origin. FrontchannelLogoutPath is the provider's logout page for that
// browser session: it ends the session and renders, for each registered
// front-channel logout URI, <iframe src="URI?iss=ISSUER&sid=SID"> (§3),
// showing #done once every frame has loaded.

// SessionCookie is the provider's browser session cookie (its value is the sid).
const SessionCookie = "testop_session"

// FrontchannelLogoutPath is the provider's front-channel logout page.
const FrontchannelLogoutPath = "/frontchannel-logout"

// loginPath is where the example's login form posts.
const loginPath = "/login/username"

type providerSession struct {
	sid     string
	subject string
}

// sessions are the provider's browser sessions.
type sessions struct {
	mu        sync.Mutex
	byAuthReq map[string]providerSession // auth request id -> its login's session
	live      map[string]string          // sid -> subject, until logged out
	bySubject map[string][]string        // subject -> sids, in login order
	rpURIs    []string                   // registered frontchannel_logout_uri values
}

func newSessions(uris []string) *sessions {
	return &sessions{byAuthReq: map[string]providerSession{}, live: map[string]string{},
		bySubject: map[string][]string{}, rpURIs: slices.Clone(uris)}
}

// start begins a provider session for the auth request's login.
func (ss *sessions) start(authReqID, subject string) {
	var b [16]byte
	_, _ = rand.Read(b[:])
	sid := hex.EncodeToString(b[:])
	ss.mu.Lock()
	ss.byAuthReq[authReqID] = providerSession{sid: sid, subject: subject}
	ss.live[sid] = subject
	ss.bySubject[subject] = append(ss.bySubject[subject], sid)
	ss.mu.Unlock()
}

func (ss *sessions) ofAuthRequest(id string) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byAuthReq[id].sid
}

// SessionIDs returns the sids of the user's (by username or subject)
// provider sessions still live, oldest first: the sid claim of the ID
// tokens of each login.
func (p *Provider) SessionIDs(user string) []string {
	u, ok := p.store.users.lookup(user)
	if !ok {
		return nil
	}
	ss := p.store.sessions
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []string
	for _, sid := range ss.bySubject[u.Subject] {
		if _, ok := ss.live[sid]; ok {
			out = append(out, sid)
		}
	}
	return out
}

// SetFrontchannelLogoutURIs replaces the client's registered
// front-channel logout URIs (Config.FrontchannelLogoutURIs), e.g. once a
// gateway's address is known.
func (p *Provider) SetFrontchannelLogoutURIs(uris ...string) {
	ss := p.store.sessions
	ss.mu.Lock()
	ss.rpURIs = slices.Clone(uris)
	ss.mu.Unlock()
}

// FrontchannelLogoutURL is the URL the provider's logout page frames for
// an RP's front-channel logout URI and a sid: iss and sid appended to its
// query (§2).
func (p *Provider) FrontchannelLogoutURL(rpURI, sid string) string {
	sep := "?"
	if strings.Contains(rpURI, "?") {
		sep = "&"
	}
	return rpURI + sep + url.Values{"iss": {p.issuer}, "sid": {sid}}.Encode()
}

// withSessionCookie sets the provider session cookie on the response of a
// login form post that succeeded.
func (p *Provider) withSessionCookie(w http.ResponseWriter, r *http.Request, next http.Handler) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	_ = r.Body.Close()
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	form, _ := url.ParseQuery(string(body))
	id := form.Get("id")
	next.ServeHTTP(&cookieOnRedirect{ResponseWriter: w, set: func(h http.Header) {
		if sid := p.store.sessions.ofAuthRequest(id); sid != "" {
			c := &http.Cookie{Name: SessionCookie, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
			h.Add("Set-Cookie", c.String())
		}
	}}, r)
}

type cookieOnRedirect struct {
	http.ResponseWriter
	set  func(http.Header)
	done bool
}

func (c *cookieOnRedirect) WriteHeader(code int) {
	if !c.done {
		c.done = true
		if code == http.StatusFound || code == http.StatusSeeOther {
			c.set(c.Header())
		}
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *cookieOnRedirect) Write(b []byte) (int, error) {
	c.done = true // a re-rendered form: the login failed
	return c.ResponseWriter.Write(b)
}

var logoutPage = template.Must(template.New("logout").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Logged out</title></head>
<body>
<h1>{{if .}}Logging you out{{else}}No session{{end}}</h1>
{{range .}}<iframe src="{{.}}" width="300" height="80" onload="loaded()"></iframe>
{{end}}<p id="done" hidden>Logged out of every application</p>
<script>
var pending = {{len .}};
function loaded() { if (--pending === 0) document.getElementById("done").hidden = false; }
if (pending === 0) document.getElementById("done").hidden = false;
</script>
</body></html>
`))

// serveFrontchannelLogout is the provider's logout page (§3): it ends the
// browser's provider session and frames every registered RP front-channel
// logout URI with iss and that session's sid.
func (p *Provider) serveFrontchannelLogout(w http.ResponseWriter, r *http.Request) {
	ss := p.store.sessions
	var frames []string
	if c, err := r.Cookie(SessionCookie); err == nil {
		ss.mu.Lock()
		_, live := ss.live[c.Value]
		delete(ss.live, c.Value)
		uris := slices.Clone(ss.rpURIs)
		ss.mu.Unlock()
		if live {
			for _, u := range uris {
				frames = append(frames, p.FrontchannelLogoutURL(u, c.Value))
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_ = logoutPage.Execute(w, frames)
}
