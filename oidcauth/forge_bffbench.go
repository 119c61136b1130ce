//go:build bffbench

package oidcauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// This file exists only in builds with the bffbench tag (the load
// benchmark, integration/cmd/loadbench): it seals many sessions without
// logging each one in, so the benchmark can measure the chain with
// 100,000 distinct users. A production caddy never contains it.

// ForgedSession is one session as a browser and a store would hold it.
type ForgedSession struct {
	// Cookie is the Cookie header value the browser sends (plain HTTP
	// cookie names).
	Cookie string
	// RedisKey and RedisValue are the record the redis store keeps for it
	// (empty for the cookie store); the key includes keyPrefix.
	RedisKey   string
	RedisValue []byte
}

// ForgeSessions seals n sessions with the first of secrets (oidc_auth's
// session keys), for store cookie or redis, each with its own subject
// (prefix + index) and a copy of claims, created now, with an access token
// valid for a day (mint mode does not send it anywhere) and no refresh
// token, so nothing calls the provider.
func ForgeSessions(secrets []string, store, keyPrefix, subjectPrefix string, claims map[string]any, n int) ([]ForgedSession, error) {
	keys, err := newKeyring(secrets)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cs := newCookieStore(keys, nil, time.Now)
	out := make([]ForgedSession, 0, n)
	for i := range n {
		c := make(map[string]any, len(claims)+1)
		for k, v := range claims {
			c[k] = v
		}
		sub := fmt.Sprintf("%s%d", subjectPrefix, i)
		c["sub"] = sub
		s := &session{
			ID: newSessionID(), Subject: sub, Claims: c, AccessToken: "forged-" + sub,
			TokenExpiry: now.Add(24 * time.Hour).Unix(), TokenLife: 86400,
			Created: now.UnixMilli(), LastSeen: now.UnixMilli(), Checked: now.UnixMilli(),
		}
		switch store {
		case storeCookie:
			v, err := cs.save(context.Background(), s, true, time.Time{})
			if err != nil {
				return nil, err
			}
			out = append(out, ForgedSession{Cookie: chunkedCookie(v)})
		case storeRedis:
			raw, err := encodeRecord(keys, s)
			if err != nil {
				return nil, err
			}
			out = append(out, ForgedSession{Cookie: sessionCookieBase + "=" + s.ID,
				RedisKey: keyPrefix + "s:" + hashID(s.ID), RedisValue: raw})
		default:
			return nil, errors.New("ForgeSessions: store is cookie or redis")
		}
	}
	return out, nil
}

// chunkedCookie is the Cookie header of a sealed value as
// writeSessionCookie splits it.
func chunkedCookie(value string) string {
	var parts []string
	for n := 0; len(value) > 0 && n < maxChunks; n++ {
		part := value[:min(len(value), chunkSize)]
		value = value[len(part):]
		parts = append(parts, chunkName(sessionCookieBase, n)+"="+part)
	}
	return strings.Join(parts, "; ")
}
