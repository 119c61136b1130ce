// Package caddybff holds caddy-bff's token and portal handlers: bff_token
// (session to JWT), bff_jwks (the public keys of minted tokens), bff_apps
// (the micro-frontends a user may load), bff_rate_limit (a token bucket
// per user) and bff_health (readiness).
package caddybff
