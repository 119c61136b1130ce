// Package signkey loads the private and public keys caddy-bff signs and
// verifies JWTs with (bff_token's minted tokens, bff_jwks' key set,
// oidc_auth's RFC 7523 client assertions): PEM text or a file path,
// EC P-256, RSA of 2048 bits or more, or Ed25519, each with its JWS
// algorithm and its RFC 7638 thumbprint as key id. Errors never echo a
// value that may be the key itself.
package signkey

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/caddy-bff/caddy-bff/internal/secret"
)

// minRSABits is the smallest RSA modulus accepted for signing or
// publishing (NIST SP 800-131A: 2048 bits is the floor since 2014).
const minRSABits = 2048

// maxKeyFileSize bounds a signing key file read by path: a PEM key is a
// few KiB at most, and a mistaken path should not pull a large file into
// memory.
const maxKeyFileSize = 1 << 20

// Key is a parsed key. Every user derives the key id the same way from
// the public key, so a token's kid always names its JWK.
type Key struct {
	// Private signs; nil when only the public key was given (bff_jwks).
	Private crypto.PrivateKey
	Public  crypto.PublicKey
	Method  jwt.SigningMethod
	// KID is the RFC 7638 JWK SHA-256 thumbprint of Public, base64url
	// without padding.
	KID string
}

// Alg is the JWS "alg" (RFC 7518 §3.1) the key signs with.
func (k *Key) Alg() string { return k.Method.Alg() }

// JWK is the public JWK published in the key set (RFC 7517 §4).
func (k *Key) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Public, KeyID: k.KID, Algorithm: k.Alg(), Use: "sig"}
}

// resolveKeyMaterial turns a signing_key setting into PEM bytes: global
// placeholders ({env.*}, {file.*}) are resolved, failing on unknown or empty
// ones, and a value that is not PEM is read as a file path. Errors never
// echo the value, which may be a key (a PEM body without its armour, a
// base64 DER blob, a JWK), unless it is clearly a path (clearlyPath).
func resolveKeyMaterial(v string) ([]byte, error) {
	s, err := secret.Resolve(caddy.NewReplacer(), "", v)
	if err != nil {
		return nil, fmt.Errorf("resolving placeholders: %w", err)
	}
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		return []byte(s), nil
	}
	name := "the file named by the value (not shown: it is not clearly a path; give PEM text or a path such as /etc/bff/signing-key.pem)"
	if clearlyPath(s) {
		name = s
	}
	if s == "" || strings.ContainsAny(s, "\r\n") || len(s) > 4096 {
		return nil, errors.New("value is neither PEM nor a file path (not shown)")
	}
	f, err := os.Open(s)
	if err != nil {
		// The *PathError carries the value: keep only what went wrong.
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return nil, fmt.Errorf("not PEM text, and reading %s failed: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		if pe, ok := errors.AsType[*fs.PathError](err); ok {
			err = pe.Err
		}
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(b) > maxKeyFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxKeyFileSize)
	}
	return b, nil
}

// clearlyPath reports whether a signing_key value is unmistakably a file
// path, so that errors may name it: absolute or ./ ../ relative, a file
// name with an extension (base64 and hex have no dot, JSON has quotes),
// and only characters of ordinary paths.
func clearlyPath(s string) bool {
	if !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "./") && !strings.HasPrefix(s, "../") || len(s) > 1024 {
		return false
	}
	base := s[strings.LastIndexByte(s, '/')+1:]
	if !strings.Contains(strings.TrimLeft(base, "."), ".") {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.ContainsRune("/._-~@", c)) {
			return false
		}
	}
	return true
}

// Load resolves and parses a key setting. allowPublic admits a
// public key ("PUBLIC KEY", PKIX), which can be published but not sign.
func Load(v string, allowPublic bool) (*Key, error) {
	b, err := resolveKeyMaterial(v)
	if err != nil {
		return nil, err
	}
	return parseKey(b, allowPublic)
}

// parseKey reads the first key block of PEM text: PKCS#8 "PRIVATE KEY",
// SEC1 "EC PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY" or, with allowPublic,
// PKIX "PUBLIC KEY". Other blocks (such as OpenSSL's "EC PARAMETERS") are
// skipped. Only EC P-256 (ES256), RSA of at least 2048 bits (RS256) and
// Ed25519 (EdDSA) keys are accepted.
func parseKey(b []byte, allowPublic bool) (*Key, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM key block found")
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted {
			return nil, errors.New("encrypted PEM keys are not supported")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "PUBLIC KEY":
			if !allowPublic {
				return nil, errors.New("need a private key, got a public key")
			}
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("encrypted PEM keys are not supported")
		default:
			continue
		}
		if err != nil {
			// x509 parse errors describe the structure, not the key bytes.
			return nil, fmt.Errorf("parsing %s: %w", strings.ToLower(block.Type), err)
		}
		return New(key)
	}
}

// New checks the key's type and size and derives alg and kid.
func New(key any) (*Key, error) {
	k := new(Key)
	switch key := key.(type) {
	case *ecdsa.PrivateKey:
		k.Private, k.Public = key, &key.PublicKey
	case *rsa.PrivateKey:
		k.Private, k.Public = key, &key.PublicKey
	case ed25519.PrivateKey:
		k.Private, k.Public = key, key.Public()
	case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		k.Public = key
	default:
		return nil, fmt.Errorf("unsupported key type %T: need EC P-256, RSA or Ed25519", key)
	}
	switch pub := k.Public.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("EC key on curve %s: need P-256", pub.Curve.Params().Name)
		}
		k.Method = jwt.SigningMethodES256
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits {
			return nil, fmt.Errorf("RSA key is %d bits: need at least %d", bits, minRSABits)
		}
		k.Method = jwt.SigningMethodRS256
	case ed25519.PublicKey:
		k.Method = jwt.SigningMethodEdDSA
	}
	kid, err := thumbprint(k.Public)
	if err != nil {
		return nil, err
	}
	k.KID = kid
	return k, nil
}

// thumbprint is the RFC 7638 SHA-256 JWK thumbprint of pub, base64url
// without padding (RFC 7638 §3.1, as used for kid in RFC 9449 and others).
func thumbprint(pub crypto.PublicKey) (string, error) {
	jwk := jose.JSONWebKey{Key: pub}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("computing key thumbprint: %w", err)
	}
	if len(tp) != sha256.Size {
		return "", errors.New("computing key thumbprint: unexpected length")
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}
