package oidcauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MinKeyLen is the shortest accepted session key, in bytes.
const MinKeyLen = 32

// kidLen is the length of a key id in a sealed value (base64url chars).
const kidLen = 8

var (
	errUnknownKey = errors.New("sealed value names an unknown key")
	errMalformed  = errors.New("malformed sealed value")
	errOpen       = errors.New("sealed value does not authenticate")
)

// sealKey is one AES-256-GCM key derived from an operator secret, and the
// secret's separate root for keys bound to a value (sealBound).
type sealKey struct {
	id    string
	aead  cipher.AEAD
	bound []byte
}

// keyring seals with its first key and opens with any key, found by the
// key id a sealed value carries, so rotation never tries every key.
type keyring struct {
	keys []sealKey
}

// newKeyring derives one AEAD per secret with HKDF-SHA256 (RFC 5869), so
// that operator secrets of any shape (passphrases, base64 blobs) become
// uniform 256-bit keys, and a key id that reveals nothing about the key.
func newKeyring(secrets []string) (*keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no keys")
	}
	kr := new(keyring)
	seen := make(map[string]int)
	for i, s := range secrets {
		if len(s) < MinKeyLen {
			return nil, fmt.Errorf("key %d is %d bytes, need at least %d", i+1, len(s), MinKeyLen)
		}
		k, err := hkdf.Key(sha256.New, []byte(s), []byte("caddy-bff"), "session-seal v1", 32)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		kid, err := hkdf.Key(sha256.New, []byte(s), []byte("caddy-bff"), "key-id v1", 6)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		bound, err := hkdf.Key(sha256.New, []byte(s), []byte("caddy-bff"), "bound-seal v1", 32)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		id := base64.RawURLEncoding.EncodeToString(kid)
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("key %d repeats key %d", i+1, j)
		}
		seen[id] = i + 1
		kr.keys = append(kr.keys, sealKey{id: id, aead: aead, bound: bound})
	}
	return kr, nil
}

// seal encrypts and authenticates plaintext for one purpose; the purpose is
// bound as additional data, so a login cookie never opens as a session.
// Format: <kid>.<base64url(nonce || ciphertext || tag)>.
func (kr *keyring) seal(purpose string, plaintext []byte) string {
	return sealWith(kr.keys[0].id, kr.keys[0].aead, []byte(purpose), plaintext)
}

func sealWith(kid string, aead cipher.AEAD, ad, plaintext []byte) string {
	ns := aead.NonceSize()
	buf := make([]byte, ns, ns+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+)
	buf = aead.Seal(buf, buf[:ns], plaintext, ad)
	var sb strings.Builder
	sb.Grow(kidLen + 1 + base64.RawURLEncoding.EncodedLen(len(buf)))
	sb.WriteString(kid)
	sb.WriteByte('.')
	sb.WriteString(base64.RawURLEncoding.EncodeToString(buf))
	return sb.String()
}

// sealBound seals plaintext under a key derived from the keyring's first
// secret and bind, with ad authenticated alongside. Server-side stores
// bind what they keep to the session id, which only the browser's cookie
// holds: a dump of the store, even with the gateway's config and keys,
// opens nothing without the cookie.
func (kr *keyring) sealBound(purpose, bind string, ad, plaintext []byte) (string, error) {
	k := &kr.keys[0]
	aead, err := boundAEAD(k, purpose, bind)
	if err != nil {
		return "", err
	}
	return sealWith(k.id, aead, boundAD(purpose, ad), plaintext), nil
}

// openBound reverses sealBound; it fails for any other bind.
func (kr *keyring) openBound(purpose, bind string, ad []byte, sealed string) ([]byte, error) {
	k, raw, err := kr.find(sealed)
	if err != nil {
		return nil, err
	}
	aead, err := boundAEAD(k, purpose, bind)
	if err != nil {
		return nil, err
	}
	return openWith(aead, boundAD(purpose, ad), raw)
}

// boundAEAD derives the AES-256-GCM key of (purpose, bind) with HKDF
// (RFC 5869) from the secret's bound root; the bind is length-prefixed
// so that no two (purpose, bind) pairs share a key.
func boundAEAD(k *sealKey, purpose, bind string) (cipher.AEAD, error) {
	info := purpose + "\x00" + strconv.Itoa(len(bind)) + "\x00" + bind
	key, err := hkdf.Expand(sha256.New, k.bound, info, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func boundAD(purpose string, ad []byte) []byte {
	out := make([]byte, 0, len(purpose)+1+len(ad))
	out = append(out, purpose...)
	out = append(out, 0)
	return append(out, ad...)
}

// open reverses seal. It fails closed on any malformed, tampered, truncated
// or foreign value, and on values sealed for another purpose.
func (kr *keyring) open(purpose, sealed string) ([]byte, error) {
	k, raw, err := kr.find(sealed)
	if err != nil {
		return nil, err
	}
	return openWith(k.aead, []byte(purpose), raw)
}

// find returns the key a sealed value names and the value's decoded bytes.
func (kr *keyring) find(sealed string) (*sealKey, []byte, error) {
	if len(sealed) < kidLen+1 || sealed[kidLen] != '.' {
		return nil, nil, errMalformed
	}
	kid := sealed[:kidLen]
	var k *sealKey
	for i := range kr.keys {
		if kr.keys[i].id == kid {
			k = &kr.keys[i]
			break
		}
	}
	if k == nil {
		return nil, nil, errUnknownKey
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed[kidLen+1:])
	if err != nil {
		return nil, nil, errMalformed
	}
	return k, raw, nil
}

func openWith(aead cipher.AEAD, ad, raw []byte) ([]byte, error) {
	ns := aead.NonceSize()
	if len(raw) < ns+aead.Overhead() {
		return nil, errMalformed
	}
	pt, err := aead.Open(raw[ns:ns], raw[:ns], raw[ns:], ad)
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}
