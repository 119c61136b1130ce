package oidcauth

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/caddy-bff/caddy-bff/internal/problem"
)

// profileClaims are the claims /auth/user repeats (OpenID Connect Core
// §5.1 standard claims, plus common group claims). Tokens never appear.
var profileClaims = []string{
	"name", "given_name", "family_name", "middle_name", "nickname", "preferred_username",
	"profile", "picture", "website", "email", "email_verified", "gender", "birthdate",
	"zoneinfo", "locale", "phone_number", "phone_number_verified", "updated_at", "groups", "roles",
}

// serveUser tells the shell who is logged in and when the session ends.
// `?touch=false` reads without extending the idle timeout (polling).
func (h *Handler) serveUser(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		problem.Error(w, r, http.StatusMethodNotAllowed, "user takes GET")
		return
	}
	id, ok := h.authenticate(w, r, false)
	if !ok {
		return
	}
	if id == nil {
		h.writeUnauthorized(w, r, "not logged in")
		return
	}
	out := make(map[string]any, len(profileClaims)+4)
	for _, k := range profileClaims {
		if v, ok := id.Claims[k]; ok {
			out[k] = v
		}
	}
	out["sub"] = id.Subject
	out["scopes"] = id.Scopes
	out["expires_at"] = id.ExpiresAt.UTC().Format(time.RFC3339)
	out["idle_expires_at"] = id.idleExpiresAt.UTC().Format(time.RFC3339)
	// What step-up requirements look at: the shell can tell whether a
	// route will ask the user to authenticate again.
	if id.ACR != "" {
		out["acr"] = id.ACR
	}
	if !id.AuthTime.IsZero() {
		out["auth_time"] = id.AuthTime.UTC().Format(time.RFC3339)
	}
	body, err := json.Marshal(out)
	if err != nil {
		problem.Error(w, r, http.StatusInternalServerError, "cannot encode the user")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(body)
}
