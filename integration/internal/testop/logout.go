package testop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// BackchannelEvent is the event claim of an OpenID Connect Back-Channel
// Logout 1.0 logout token.
const BackchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// LogoutToken signs a back-channel logout token with the provider's own
// key, as the provider would send it to the client's
// backchannel_logout_uri: iss, aud (the client), iat, exp (+2m), a random
// jti, the logout event, and sub and/or sid when non-empty. edit, if not
// nil, may change or delete claims first (to forge bad tokens in tests).
func (p *Provider) LogoutToken(sub, sid string, edit func(claims map[string]any)) (string, error) {
	key, err := p.store.SigningKey(context.Background())
	if err != nil {
		return "", err
	}
	var jti [12]byte
	_, _ = rand.Read(jti[:])
	now := time.Now()
	claims := map[string]any{
		"iss":    p.issuer,
		"aud":    p.store.client.id,
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    hex.EncodeToString(jti[:]),
		"events": map[string]any{BackchannelEvent: map[string]any{}},
	}
	if sub != "" {
		claims["sub"] = sub
	}
	if sid != "" {
		claims["sid"] = sid
	}
	if edit != nil {
		edit(claims)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: key.Key()},
		(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", key.ID()))
	if err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}
