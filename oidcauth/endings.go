package oidcauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-bff/caddy-bff/internal/redisconf"
)

// endings records ended sessions where every instance that must honour
// them can see them: in this process (memory), or in Redis when a `redis`
// block is configured. The stateless cookie store consults it on every
// request, because a copy of an ended session's cookie still opens.
type endings interface {
	ended(ctx context.Context, s *session) (bool, error)
	endSession(ctx context.Context, s *session, until time.Time) error
	endSID(ctx context.Context, sid string, until time.Time) error
	endSub(ctx context.Context, sub string, at, until time.Time) error
	// jtiSeen reports whether a logout token id was recorded (a replay);
	// recordJTI records one, once the sessions it ends are ended, so that
	// a logout that failed can be retried.
	jtiSeen(ctx context.Context, jti string) (bool, error)
	recordJTI(ctx context.Context, jti string, until time.Time) error
	// issueSID records a provider session id a login here received, until
	// its sessions end; sidIssued reports whether one was. Front-channel
	// logout, which is not signed, acts only on these.
	issueSID(ctx context.Context, sid string, until time.Time) error
	sidIssued(ctx context.Context, sid string) (bool, error)
}

// memoryEndings adapts the in-process revocation list.
type memoryEndings struct {
	rv  *revocations
	now func() time.Time
}

func (m memoryEndings) ended(_ context.Context, s *session) (bool, error) {
	return m.rv.ended(s, m.now()), nil
}

func (m memoryEndings) endSession(_ context.Context, s *session, until time.Time) error {
	m.rv.add(s.hkey(), until)
	return nil
}

func (m memoryEndings) endSID(_ context.Context, sid string, until time.Time) error {
	m.rv.addSID(sid, until)
	return nil
}

func (m memoryEndings) endSub(_ context.Context, sub string, at, until time.Time) error {
	m.rv.addSub(sub, at, until)
	return nil
}

func (m memoryEndings) jtiSeen(_ context.Context, jti string) (bool, error) {
	return m.rv.jtiSeen(jti, m.now()), nil
}

func (m memoryEndings) recordJTI(_ context.Context, jti string, until time.Time) error {
	m.rv.recordJTI(jti, until)
	return nil
}

func (m memoryEndings) issueSID(_ context.Context, sid string, until time.Time) error {
	m.rv.issue(sid, until)
	return nil
}

func (m memoryEndings) sidIssued(_ context.Context, sid string) (bool, error) {
	return m.rv.wasIssued(sid, m.now()), nil
}

// redisEndings keeps the same facts in Redis, shared by every instance:
// keys hold hashes of ids, never the ids, and expire when the sessions
// they end would have.
type redisEndings struct {
	c   redis.UniversalClient
	cfg *redisconf.Resolved
	now func() time.Time
}

func digest(kind, v string) string {
	sum := sha256.Sum256([]byte("caddy-bff " + kind + "\x00" + v))
	return base64.RawURLEncoding.EncodeToString(sum[:18])
}

func (re redisEndings) keySession(hkey string) string { return re.cfg.KeyPrefix + "end:s:" + hkey }
func (re redisEndings) keySID(sid string) string {
	return re.cfg.KeyPrefix + "end:p:" + digest("sid", sid)
}
func (re redisEndings) keySub(sub string) string {
	return re.cfg.KeyPrefix + "end:u:" + digest("sub", sub)
}

func ttl(until, now time.Time) time.Duration {
	return max(until.Sub(now), time.Millisecond)
}

// ended costs one round trip: a pipeline of GETs (not MGET, whose keys
// would cross hash slots on a Cluster).
func (re redisEndings) ended(ctx context.Context, s *session) (bool, error) {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	keys := []string{re.keySession(s.hkey()), re.keySub(s.Subject)}
	if s.SID != "" {
		keys = append(keys, re.keySID(s.SID))
	}
	cmds, err := re.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	vals := make([]*string, len(cmds))
	for i, c := range cmds {
		v, err := c.(*redis.StringCmd).Result()
		switch {
		case err == nil:
			vals[i] = &v
		case !errors.Is(err, redis.Nil):
			return false, err
		}
	}
	if vals[0] != nil || (len(vals) > 2 && vals[2] != nil) {
		return true, nil
	}
	if vals[1] != nil {
		ms, err := strconv.ParseInt(*vals[1], 10, 64)
		if err != nil || s.Created <= ms {
			return true, nil // unreadable: fail closed
		}
	}
	return false, nil
}

func (re redisEndings) endSession(ctx context.Context, s *session, until time.Time) error {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	return re.c.Set(ctx, re.keySession(s.hkey()), "1", ttl(until, re.now())).Err()
}

func (re redisEndings) endSID(ctx context.Context, sid string, until time.Time) error {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	return re.c.Set(ctx, re.keySID(sid), "1", ttl(until, re.now())).Err()
}

// endSub keeps the latest logout time of a subject: sessions created up to
// then are dead.
var endSubScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local at = tonumber(ARGV[1])
if at > cur then cur = at end
redis.call('SET', KEYS[1], tostring(cur), 'PX', ARGV[2])
return cur`)

func (re redisEndings) endSub(ctx context.Context, sub string, at, until time.Time) error {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	return endSubScript.Run(ctx, re.c, []string{re.keySub(sub)},
		at.UnixMilli(), ttl(until, re.now()).Milliseconds()).Err()
}

func (re redisEndings) keyJTI(jti string) string {
	return re.cfg.KeyPrefix + "jti:" + digest("jti", jti)
}

func (re redisEndings) jtiSeen(ctx context.Context, jti string) (bool, error) {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	n, err := re.c.Exists(ctx, re.keyJTI(jti)).Result()
	return n > 0, err
}

func (re redisEndings) recordJTI(ctx context.Context, jti string, until time.Time) error {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	return re.c.Set(ctx, re.keyJTI(jti), "1", ttl(until, re.now())).Err()
}

func (re redisEndings) keyIssued(sid string) string {
	return re.cfg.KeyPrefix + "sid:" + digest("sid", sid)
}

func (re redisEndings) issueSID(ctx context.Context, sid string, until time.Time) error {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	return re.c.Set(ctx, re.keyIssued(sid), "1", ttl(until, re.now())).Err()
}

func (re redisEndings) sidIssued(ctx context.Context, sid string) (bool, error) {
	ctx, cancel := re.cfg.Ctx(ctx)
	defer cancel()
	n, err := re.c.Exists(ctx, re.keyIssued(sid)).Result()
	return n > 0, err
}
