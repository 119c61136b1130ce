package testop

import (
	"context"
	"crypto/subtle"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// store wraps the zitadel example's in-memory storage. It replaces the
// example's global client registry with our one client, grants custom
// scopes per user, shortens access tokens, makes refresh tokens safe to
// race (the example reads its refresh token map unlocked and hands out
// shared pointers), answers a rotated-away refresh token with
// invalid_grant, and implements RFC 8693 token exchange for a plain
// subject token (the example only lets admins impersonate).
type store struct {
	*storage.Storage

	client         *client
	users          *userStore
	accessTTL      time.Duration
	strictOffline  bool
	loginSucceeded func()
	sessions       *sessions

	// rtMu serialises every call that reads or writes the example's
	// refresh token map.
	rtMu sync.Mutex

	// Step-up: see Config.ACRValues. acrs holds each authorization
	// request's acr by request id; authTimeShift ages every auth_time
	// reported (a provider reusing an old login despite max_age).
	acrValues     []string
	defaultACR    string
	acrs          map[string]string
	authTimeShift time.Duration
	lastAuth      AuthRequestSeen

	mu      sync.Mutex
	access  map[string]*accessInfo  // by access token id (JWT jti)
	refresh map[string]*refreshInfo // by refresh token
	nowFunc func() time.Time
}

type accessInfo struct {
	subject string
	scopes  []string
	expires time.Time
	refresh string // the refresh token issued with it, if any
}

type refreshInfo struct {
	subject  string
	accessID string
}

var (
	_ exampleop.Storage                 = (*store)(nil)
	_ op.TokenExchangeStorage           = (*store)(nil)
	_ op.CanGetPrivateClaimsFromRequest = (*store)(nil)
	_ op.CanSetUserinfoFromRequest      = (*store)(nil)
)

func newStore(c *client, users *userStore, accessTTL time.Duration, strictOffline bool, loginSucceeded func()) *store {
	return &store{
		// An empty client map: the example's registry is a package
		// global, and our client is served by GetClientByClientID below.
		Storage:        storage.NewStorageWithClients(users, map[string]*storage.Client{}),
		client:         c,
		users:          users,
		accessTTL:      accessTTL,
		strictOffline:  strictOffline,
		loginSucceeded: loginSucceeded,
		access:         map[string]*accessInfo{},
		acrs:           map[string]string{},
		refresh:        map[string]*refreshInfo{},
		nowFunc:        time.Now,
	}
}

// GetClientByClientID implements op.Storage.
func (s *store) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	if clientID != s.client.id {
		return nil, errors.New("client not found")
	}
	return s.client, nil
}

// AuthorizeClientIDSecret implements op.Storage.
// GetKeyByIDAndClientID returns our client's public key for its RFC 7523
// client assertions (the example's own keys are for its service users).
func (s *store) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	if clientID == s.client.id && s.client.key != nil {
		if keyID != s.client.keyID {
			return nil, errors.New("key not found")
		}
		return &jose.JSONWebKey{KeyID: keyID, Use: "sig", Key: s.client.key, Algorithm: "RS256"}, nil
	}
	return s.Storage.GetKeyByIDAndClientID(ctx, keyID, clientID)
}

func (s *store) AuthorizeClientIDSecret(_ context.Context, clientID, clientSecret string) error {
	if clientID != s.client.id || subtle.ConstantTimeCompare([]byte(clientSecret), []byte(s.client.secret)) != 1 {
		return errors.New("invalid client credentials")
	}
	return nil
}

// ClientCredentials refuses the example's built-in service user: our
// client has no client_credentials grant.
func (s *store) ClientCredentials(context.Context, string, string) (op.Client, error) {
	return nil, errors.New("client credentials grant is not available")
}

// CreateAuthRequest drops offline_access unless prompt=consent was sent,
// as OpenID Connect Core 1.0 section 11 requires, when strict.
func (s *store) CreateAuthRequest(ctx context.Context, authReq *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if s.strictOffline && slices.Contains(authReq.Scopes, oidc.ScopeOfflineAccess) &&
		!slices.Contains(authReq.Prompt, oidc.PromptConsent) {
		authReq.Scopes = slices.DeleteFunc(slices.Clone(authReq.Scopes), func(sc string) bool {
			return sc == oidc.ScopeOfflineAccess
		})
	}
	req, err := s.Storage.CreateAuthRequest(ctx, authReq, userID)
	if err != nil {
		return nil, err
	}
	seen := AuthRequestSeen{ACRValues: strings.Join(authReq.ACRValues, " "), Prompt: strings.Join(authReq.Prompt, " ")}
	if authReq.MaxAge != nil {
		seen.MaxAge = strconv.FormatUint(uint64(*authReq.MaxAge), 10)
	}
	s.mu.Lock()
	acr := s.defaultACR
	for _, v := range authReq.ACRValues {
		if slices.Contains(s.acrValues, v) {
			acr = v
			break
		}
	}
	s.acrs[req.GetID()] = acr
	s.lastAuth = seen
	s.mu.Unlock()
	return s.wrap(req), nil
}

// AuthRequestSeen is what an authorization request asked for, as the
// provider parsed it.
type AuthRequestSeen struct {
	ACRValues string // space-separated; empty when not sent
	MaxAge    string // seconds; empty when not sent
	Prompt    string // space-separated
}

// acrAuthRequest is the example's auth request with the acr this provider
// performed and an auth_time aged by authTimeShift.
type acrAuthRequest struct {
	*storage.AuthRequest
	acr   string
	shift time.Duration
}

func (a *acrAuthRequest) GetACR() string { return a.acr }

func (a *acrAuthRequest) GetAuthTime() time.Time {
	t := a.AuthRequest.GetAuthTime()
	if t.IsZero() {
		return t
	}
	return t.Add(-a.shift)
}

func (s *store) wrap(req op.AuthRequest) op.AuthRequest {
	ar, ok := req.(*storage.AuthRequest)
	if !ok {
		return req
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &acrAuthRequest{AuthRequest: ar, acr: s.acrs[ar.GetID()], shift: s.authTimeShift}
}

// unwrap gives the example's own request type back: it tells code flow
// from refresh by it.
func unwrap[T any](req T) T {
	if w, ok := any(req).(*acrAuthRequest); ok {
		if v, ok := any(w.AuthRequest).(T); ok {
			return v
		}
	}
	return req
}

// AuthRequestByID implements op.Storage.
func (s *store) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	req, err := s.Storage.AuthRequestByID(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.wrap(req), nil
}

// AuthRequestByCode implements op.Storage.
func (s *store) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	req, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil {
		return nil, err
	}
	return s.wrap(req), nil
}

// CheckUsernamePassword implements the example login's authenticate
// interface; on success it narrows the request's custom scopes to the
// user's.
func (s *store) CheckUsernamePassword(username, password, id string) error {
	if err := s.Storage.CheckUsernamePassword(username, password, id); err != nil {
		return err
	}
	req, err := s.Storage.AuthRequestByID(context.Background(), id)
	if err != nil {
		return err
	}
	if ar, ok := req.(*storage.AuthRequest); ok {
		ar.Scopes = s.grantedScopes(ar.UserID, ar.Scopes)
		s.sessions.start(id, ar.UserID)
	}
	if s.loginSucceeded != nil {
		s.loginSucceeded()
	}
	return nil
}

// grantedScopes keeps the standard scopes and the custom scopes the user holds.
func (s *store) grantedScopes(subject string, requested []string) []string {
	u, _ := s.users.lookup(subject)
	out := make([]string, 0, len(requested))
	for _, sc := range requested {
		if slices.Contains(s.client.customScopes, sc) && !slices.Contains(u.Scopes, sc) {
			continue
		}
		out = append(out, sc)
	}
	return out
}

func (s *store) clamp(exp time.Time) time.Time {
	if s.accessTTL > 0 {
		if limit := s.nowFunc().Add(s.accessTTL); exp.After(limit) {
			return limit
		}
	}
	return exp
}

// CreateAccessToken implements op.Storage.
func (s *store) CreateAccessToken(ctx context.Context, request op.TokenRequest) (string, time.Time, error) {
	request = unwrap(request)
	id, exp, err := s.Storage.CreateAccessToken(ctx, request)
	if err != nil {
		return "", time.Time{}, err
	}
	exp = s.clamp(exp)
	s.mu.Lock()
	s.access[id] = &accessInfo{subject: request.GetSubject(), scopes: slices.Clone(request.GetScopes()), expires: exp}
	s.mu.Unlock()
	return id, exp, nil
}

// CreateAccessAndRefreshTokens implements op.Storage. A refresh token that
// is unknown, rotated away or expired gives invalid_grant, whatever the
// race.
func (s *store) CreateAccessAndRefreshTokens(ctx context.Context, request op.TokenRequest, current string) (string, string, time.Time, error) {
	request = unwrap(request)
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	if current != "" {
		if _, err := s.Storage.TokenRequestByRefreshToken(ctx, current); err != nil {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is invalid, revoked or was rotated")
		}
	}
	id, rt, exp, err := s.Storage.CreateAccessAndRefreshTokens(ctx, request, current)
	if err != nil {
		if current != "" {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token is invalid or expired")
		}
		return "", "", time.Time{}, err
	}
	exp = s.clamp(exp)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.refresh[current]; ok && current != "" {
		// The example deletes the rotated token and its access token.
		delete(s.access, old.accessID)
		delete(s.refresh, current)
	}
	s.access[id] = &accessInfo{subject: request.GetSubject(), scopes: slices.Clone(request.GetScopes()), expires: exp, refresh: rt}
	if rt != "" {
		s.refresh[rt] = &refreshInfo{subject: request.GetSubject(), accessID: id}
	}
	return id, rt, exp, nil
}

// TokenRequestByRefreshToken implements op.Storage. It returns a copy: the
// example hands out its stored object, which the library then mutates.
func (s *store) TokenRequestByRefreshToken(ctx context.Context, refreshToken string) (op.RefreshTokenRequest, error) {
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	req, err := s.Storage.TokenRequestByRefreshToken(ctx, refreshToken)
	if err != nil {
		return nil, err
	}
	r, ok := req.(*storage.RefreshTokenRequest)
	if !ok {
		return req, nil
	}
	rt := *r.RefreshToken
	rt.AMR = slices.Clone(rt.AMR)
	rt.Audience = slices.Clone(rt.Audience)
	rt.Scopes = slices.Clone(rt.Scopes)
	return &storage.RefreshTokenRequest{RefreshToken: &rt}, nil
}

// GetRefreshTokenInfo implements op.Storage (the example's reads its map unlocked).
func (s *store) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	return s.Storage.GetRefreshTokenInfo(ctx, clientID, token)
}

// RevokeToken implements op.Storage.
func (s *store) RevokeToken(ctx context.Context, tokenIDOrToken, userID, clientID string) *oidc.Error {
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	if err := s.Storage.RevokeToken(ctx, tokenIDOrToken, userID, clientID); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ri, ok := s.refresh[tokenIDOrToken]; ok {
		delete(s.access, ri.accessID)
		delete(s.refresh, tokenIDOrToken)
	}
	delete(s.access, tokenIDOrToken)
	return nil
}

// TerminateSession implements op.Storage (end_session): every token of
// the user for the client dies.
func (s *store) TerminateSession(ctx context.Context, userID, clientID string) error {
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	if err := s.Storage.TerminateSession(ctx, userID, clientID); err != nil {
		return err
	}
	s.forgetUserLocked(ctx, userID, true)
	return nil
}

// forgetUserLocked drops our records of the user's tokens; with revoke it
// also deletes the user's refresh tokens from the example storage.
// s.rtMu must be held.
func (s *store) forgetUserLocked(ctx context.Context, subject string, revoke bool) int {
	s.mu.Lock()
	var tokens []string
	for rt, ri := range s.refresh {
		if ri.subject == subject {
			tokens = append(tokens, rt)
			delete(s.refresh, rt)
		}
	}
	for id, ai := range s.access {
		if ai.subject == subject {
			delete(s.access, id)
		}
	}
	s.mu.Unlock()
	n := 0
	if revoke {
		for _, rt := range tokens {
			if _, err := s.Storage.TokenRequestByRefreshToken(ctx, rt); err != nil {
				continue
			}
			n++
			// RevokeToken deletes the refresh token and its access token.
			_ = s.Storage.RevokeToken(ctx, rt, subject, s.client.id)
		}
	}
	return n
}

// revokeUser invalidates every refresh token (and its access token) of the user.
func (s *store) revokeUser(subject string) int {
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	return s.forgetUserLocked(context.Background(), subject, true)
}

// liveRefreshTokens counts the user's refresh tokens the provider would still honour.
func (s *store) liveRefreshTokens(subject string) int {
	return len(s.liveRefreshTokenValues(subject))
}

// liveRefreshTokenValues lists the user's refresh tokens the provider would still honour.
func (s *store) liveRefreshTokenValues(subject string) []string {
	s.rtMu.Lock()
	defer s.rtMu.Unlock()
	s.mu.Lock()
	var tokens []string
	for rt, ri := range s.refresh {
		if ri.subject == subject {
			tokens = append(tokens, rt)
		}
	}
	s.mu.Unlock()
	var live []string
	for _, rt := range tokens {
		if _, err := s.Storage.TokenRequestByRefreshToken(context.Background(), rt); err == nil {
			live = append(live, rt)
		}
	}
	return live
}

// liveAccess returns the record of an unexpired, unrevoked access token.
func (s *store) liveAccess(id string) (accessInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ai, ok := s.access[id]
	if !ok || !s.nowFunc().Before(ai.expires) {
		return accessInfo{}, false
	}
	return *ai, true
}

// ValidateTokenExchangeRequest implements op.TokenExchangeStorage: RFC 8693
// exchange of one of our live access tokens for an access token with the
// requested audience and scopes narrowed to (a subset of) the subject
// token's. No actor tokens, no impersonation, no other token types.
func (s *store) ValidateTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) error {
	if req.GetExchangeSubjectTokenType() != oidc.AccessTokenType {
		return oidc.ErrInvalidRequest().WithDescription("subject_token_type must be %s", oidc.AccessTokenType)
	}
	switch req.GetRequestedTokenType() {
	case "":
		req.SetRequestedTokenType(oidc.AccessTokenType)
	case oidc.AccessTokenType:
	default:
		return oidc.ErrInvalidRequest().WithDescription("requested_token_type must be %s", oidc.AccessTokenType)
	}
	if req.GetExchangeActor() != "" {
		return oidc.ErrInvalidRequest().WithDescription("actor_token is not supported")
	}
	subject, ok := s.liveAccess(req.GetExchangeSubjectTokenIDOrToken())
	if !ok || subject.subject != req.GetExchangeSubject() {
		return oidc.ErrInvalidGrant().WithDescription("subject_token is expired or revoked")
	}
	granted := slices.DeleteFunc(slices.Clone(subject.scopes), func(sc string) bool {
		return sc == oidc.ScopeOfflineAccess
	})
	requested := req.GetScopes()
	if len(requested) == 0 {
		req.SetCurrentScopes(granted)
		return nil
	}
	for _, sc := range requested {
		if !slices.Contains(granted, sc) {
			return oidc.ErrInvalidScope().WithDescription("scope %q exceeds the subject token's", sc)
		}
	}
	req.SetCurrentScopes(slices.Clone(requested))
	return nil
}

// GetPrivateClaimsFromTokenExchangeRequest implements op.TokenExchangeStorage.
func (s *store) GetPrivateClaimsFromTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) (map[string]any, error) {
	return map[string]any{"scope": strings.Join(req.GetScopes(), " ")}, nil
}

// GetPrivateClaimsFromRequest implements op.CanGetPrivateClaimsFromRequest:
// JWT access tokens carry the granted scopes as a scope claim (RFC 9068).
func (s *store) GetPrivateClaimsFromRequest(_ context.Context, req op.TokenRequest, _ []string) (map[string]any, error) {
	return map[string]any{"scope": strings.Join(req.GetScopes(), " ")}, nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest (ID tokens).
func (s *store) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, req, scopes); err != nil {
		return err
	}
	s.addClaims(info, req.GetSubject(), scopes)
	// The login's provider session, for front-channel and back-channel
	// logout by sid (a refresh's ID token has none: no auth request).
	if ar, ok := req.(interface{ GetID() string }); ok {
		if sid := s.sessions.ofAuthRequest(ar.GetID()); sid != "" {
			info.AppendClaims("sid", sid)
		}
	}
	return nil
}

// SetUserinfoFromToken implements op.Storage (the UserInfo endpoint).
func (s *store) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	ai, ok := s.liveAccess(tokenID)
	if !ok {
		return errors.New("token is invalid or has expired")
	}
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.addClaims(info, ai.subject, ai.scopes)
	return nil
}

// SetIntrospectionFromToken implements op.Storage (the introspection
// endpoint): a token revoked here (revokeUser, TerminateSession, rotation)
// is inactive, as at a real provider; the example would still find it.
func (s *store) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	if _, ok := s.liveAccess(tokenID); !ok {
		return errors.New("token is invalid, revoked or has expired")
	}
	return s.Storage.SetIntrospectionFromToken(ctx, resp, tokenID, subject, clientID)
}

func (s *store) addClaims(info *oidc.UserInfo, subject string, scopes []string) {
	u, ok := s.users.lookup(subject)
	if ok && slices.Contains(scopes, oidc.ScopeProfile) && len(u.Groups) > 0 {
		info.AppendClaims("groups", slices.Clone(u.Groups))
	}
}
