// Package caddybff holds caddy-bff's token and portal handlers: bff_token
// (session to JWT), bff_jwks (the public keys of minted tokens), and shared
// plumbing in its leaf packages (problem responses, request ids).
package caddybff
