// Package oidcauth implements the oidc_auth handler: OpenID Connect login
// with PKCE, sessions behind an HttpOnly cookie (sealed cookie or
// server-side store), token refresh, logout, the user endpoint, CSRF
// protection, and the identity later handlers read with IdentityFrom.
package oidcauth
