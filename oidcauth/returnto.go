package oidcauth

import (
	"net/url"
)

// maxReturnTo bounds return_to; longer values fall back to /.
const maxReturnTo = 2048

// validReturnTo accepts only a same-origin absolute path: it starts with a
// single "/", and neither the raw nor the once-decoded form could be read
// by a browser as a network-path reference (//host, /\host: browsers treat
// "\" as "/"), a scheme, or a header-splitting string. Tabs and newlines are
// refused too, because browsers strip them from URLs ("/\t/evil" is
// "//evil").
func validReturnTo(v string) bool {
	if len(v) == 0 || len(v) > maxReturnTo || v[0] != '/' {
		return false
	}
	if !safeLocalPath(v) {
		return false
	}
	dec, err := url.PathUnescape(v)
	if err != nil || !safeLocalPath(dec) {
		return false
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return false
	}
	return true
}

func safeLocalPath(v string) bool {
	if len(v) == 0 || v[0] != '/' {
		return false
	}
	if len(v) > 1 && (v[1] == '/' || v[1] == '\\') {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// returnToOr returns v when it is a valid return path, else "/".
func returnToOr(v string) string {
	if validReturnTo(v) {
		return v
	}
	return "/"
}
