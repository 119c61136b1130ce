package demoapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The payments service of the demo's "payments" micro-frontend:
//
//	GET  /api/payments  the caller's payments (any valid token)
//	POST /api/payments  sends one ({"to": "...", "amount": 12.5})
//
// The gateway's policy asks for a step-up login (acr mfa, at most five
// minutes old) before a payment reaches this service.

// Payment is one sent payment.
type Payment struct {
	ID     string  `json:"id"`
	To     string  `json:"to"`
	Amount float64 `json:"amount"`
	At     string  `json:"at"`
}

const (
	maxPayments  = 50 // per caller
	maxPayeeLen  = 60
	maxAmount    = 10000
	maxPayCaller = 1000 // callers with payments kept
)

func (a *API) listPayments(w http.ResponseWriter, _ *http.Request, c *Claims) {
	a.mu.Lock()
	out := append([]Payment{}, a.payments[c.Subject]...)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"sub": c.Subject, "payments": out})
}

func (a *API) addPayment(w http.ResponseWriter, r *http.Request, c *Claims) {
	var in struct {
		To     string  `json:"to"`
		Amount float64 `json:"amount"`
	}
	if !readJSON(w, r, &in, `{"to": "...", "amount": 12.5}`) {
		return
	}
	to := strings.TrimSpace(in.To)
	if n := utf8.RuneCountInString(to); n == 0 || n > maxPayeeLen || strings.ContainsFunc(to, unicode.IsControl) ||
		!(in.Amount > 0 && in.Amount <= maxAmount) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request",
			"error_description": fmt.Sprintf("to must be 1 to %d characters, amount between 0 and %d", maxPayeeLen, maxAmount)})
		return
	}
	a.mu.Lock()
	if a.payments == nil {
		a.payments = map[string][]Payment{}
	}
	if _, ok := a.payments[c.Subject]; !ok && len(a.payments) >= maxPayCaller {
		a.mu.Unlock()
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable"})
		return
	}
	p := Payment{ID: strconv.Itoa(a.nextID), To: to, Amount: in.Amount, At: time.Now().UTC().Format(time.RFC3339)}
	a.nextID++
	list := append(a.payments[c.Subject], p)
	if len(list) > maxPayments {
		list = list[len(list)-maxPayments:]
	}
	a.payments[c.Subject] = list
	a.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{"sub": c.Subject, "payment": p})
}
