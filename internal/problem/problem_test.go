package problem

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	r := httptest.NewRequest("GET", "/api/x", nil)
	w := httptest.NewRecorder()
	Write(w, r, Details{Status: http.StatusUnauthorized, Detail: "log in", LoginURL: "/auth/login", RequestID: "rid-1"})
	if w.Code != 401 || w.Header().Get("Content-Type") != ContentType || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", w.Code, w.Header())
	}
	var p map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"type": "about:blank", "title": "Unauthorized", "status": float64(401),
		"detail": "log in", "request_id": "rid-1", "login_url": "/auth/login"}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("%s = %v, want %v", k, p[k], v)
		}
	}
	if _, ok := p["missing"]; ok {
		t.Error("empty extension members must be left out")
	}

	w = httptest.NewRecorder()
	Write(w, r, Details{Status: http.StatusTooManyRequests, RetryAfter: 7, RequestID: "x"})
	if w.Header().Get("Retry-After") != "7" {
		t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	w = httptest.NewRecorder()
	Write(w, r, Details{})
	if w.Code != 500 {
		t.Fatalf("zero Details: %d", w.Code)
	}
}
