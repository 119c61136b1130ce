package oidcauth

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	sessionCookieBase = "bff_session"
	loginCookieBase   = "bff_login_"
	hostPrefix        = "__Host-"
	// chunkSize keeps each cookie (name, value, attributes) under the 4096
	// bytes browsers guarantee (RFC 6265 §6.1).
	chunkSize = 3800
	// maxChunks bounds how many chunk cookies a session may use and how
	// many we read: larger inputs are refused, not parsed.
	maxChunks = 8
	// maxCookieValue is the most the session cookies carry; the cookie
	// store refuses to seal more (sessionTooLargeError).
	maxCookieValue = chunkSize * maxChunks
)

// sessionCookieName is __Host-bff_session on HTTPS (Secure, Path=/, no
// Domain: it cannot be set by a sibling subdomain) and bff_session on plain
// HTTP, where browsers refuse the prefix (local development).
func sessionCookieName(r *http.Request) string {
	if isHTTPS(r) {
		return hostPrefix + sessionCookieBase
	}
	return sessionCookieBase
}

func chunkName(base string, i int) string {
	if i == 0 {
		return base
	}
	return base + "." + strconv.Itoa(i)
}

// readSessionCookie joins the session cookie's chunks. present reports
// whether any session cookie came, even an unusable one (for CSRF checks
// and clearing). It scans the Cookie header once, without allocating for a
// single chunk (r.Cookie would re-parse the whole header for each name). As
// with r.Cookie, the first cookie of a name wins.
func readSessionCookie(r *http.Request) (value string, present bool) {
	base := sessionCookieName(r)
	var chunks [maxChunks]string
	var seen [maxChunks]bool
	for _, line := range r.Header["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			name, val, ok := strings.Cut(part, "=")
			if !ok || !strings.HasPrefix(name, base) {
				continue
			}
			i := 0
			if rest := name[len(base):]; rest != "" {
				if len(rest) != 2 || rest[0] != '.' || rest[1] < '1' || rest[1] >= '0'+maxChunks {
					continue
				}
				i = int(rest[1] - '0')
			}
			if seen[i] {
				continue
			}
			if len(val) > 1 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			seen[i], chunks[i] = true, val
		}
	}
	if !seen[0] {
		return "", false
	}
	if !seen[1] || chunks[0] == "" {
		return chunks[0], true
	}
	var sb strings.Builder
	for i := 0; i < maxChunks && seen[i]; i++ {
		sb.WriteString(chunks[i])
	}
	return sb.String(), true
}

// writeSessionCookie sets value in as many chunks as needed and expires the
// chunks a previous, longer value used. A value longer than maxCookieValue
// is never cut: nothing is written (the stores refuse such values first).
func writeSessionCookie(w http.ResponseWriter, r *http.Request, value string, maxAge time.Duration) {
	if len(value) > maxCookieValue {
		return
	}
	base := sessionCookieName(r)
	secure := isHTTPS(r)
	n := 0
	for len(value) > 0 && n < maxChunks {
		part := value
		if len(part) > chunkSize {
			part = part[:chunkSize]
		}
		value = value[len(part):]
		http.SetCookie(w, &http.Cookie{
			Name: chunkName(base, n), Value: part, Path: "/", MaxAge: max(int(maxAge/time.Second), 1),
			HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
		})
		n++
	}
	for i := n; i < maxChunks; i++ {
		if _, err := r.Cookie(chunkName(base, i)); err == nil {
			expireCookie(w, chunkName(base, i), secure)
		}
	}
}

// clearSessionCookie expires every chunk the request carried.
func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	base := sessionCookieName(r)
	for i := 0; i < maxChunks; i++ {
		if _, err := r.Cookie(chunkName(base, i)); err == nil || i == 0 {
			expireCookie(w, chunkName(base, i), isHTTPS(r))
		}
	}
}

func expireCookie(w http.ResponseWriter, name string, secure bool) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}

// isOurCookie tells our cookies (session chunks, login state) apart from
// the application's.
func isOurCookie(name string) bool {
	name = strings.TrimPrefix(name, hostPrefix)
	return strings.HasPrefix(name, sessionCookieBase) || strings.HasPrefix(name, loginCookieBase)
}

// stripCookies removes our cookies from the request so that no upstream
// ever sees a session; the application's own cookies pass untouched.
func stripCookies(r *http.Request) {
	lines := r.Header.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	found := false
	for _, l := range lines {
		if strings.Contains(l, sessionCookieBase) || strings.Contains(l, loginCookieBase) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, l := range lines {
		for part := range strings.SplitSeq(l, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if isOurCookie(strings.TrimSpace(name)) {
				continue
			}
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		r.Header.Del("Cookie")
		return
	}
	r.Header.Set("Cookie", strings.Join(kept, "; "))
}
