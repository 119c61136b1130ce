// Package problem writes RFC 9457 problem details
// (application/problem+json), the one error shape of every caddy-bff
// handler.
package problem

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/caddy-bff/caddy-bff/internal/requestid"
)

// ContentType is the media type of a problem body (RFC 9457 §3).
const ContentType = "application/problem+json"

// Details is a problem body. Type defaults to "about:blank" and Title to the
// status text, as RFC 9457 §4.2.1 prescribes for that type.
type Details struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	// LoginURL tells a script where to send the user to log in (on 401).
	LoginURL string `json:"login_url,omitempty"`
	// Missing names the requirement a policy found unmet (on 401/403).
	Missing string `json:"missing,omitempty"`
	// Error is an OAuth error code, where one applies
	// (`insufficient_user_authentication`, RFC 9470).
	Error string `json:"error,omitempty"`
	// ACRValues and MaxAge are what a step-up login must deliver
	// (RFC 9470 §3): space-separated acr values, and the most seconds since
	// the user authenticated (nil: no limit).
	ACRValues string `json:"acr_values,omitempty"`
	MaxAge    *int64 `json:"max_age,omitempty"`
	// RetryAfter is the number of seconds to wait (on 429/503).
	RetryAfter int `json:"retry_after,omitempty"`
}

// Write sends p with its status. It never fails the request: an error
// writing to the client is not actionable. Headers set on w before the call
// (Retry-After, WWW-Authenticate, ...) are kept.
func Write(w http.ResponseWriter, r *http.Request, p Details) {
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	if p.RequestID == "" && r != nil {
		p.RequestID = requestid.Ensure(w, r)
	}
	if p.RetryAfter > 0 && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	body, _ := json.Marshal(p) // cannot fail: only strings and numbers
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

// Error is a shorthand for Write with a status and detail.
func Error(w http.ResponseWriter, r *http.Request, status int, detail string) {
	Write(w, r, Details{Status: status, Detail: detail})
}
