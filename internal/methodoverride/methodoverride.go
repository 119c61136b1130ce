// Package methodoverride keeps the method and path a policy judged the
// method and path an upstream acts on. Many frameworks (Express's
// method-override, Rails, Laravel, ASP.NET and others) let a header or a
// `_method` parameter name the method to act on: a POST that a gateway
// judged, or a GET that a CSRF check let through, could then run as a
// DELETE behind it. IIS URL Rewrite and older Symfony let X-Original-URL
// or X-Rewrite-URL replace the path that is routed.
package methodoverride

import (
	"net/http"
	"strings"
)

// Headers are the method-override headers in use, canonicalised.
var Headers = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// PathHeaders replace the routed path in some stacks; no client may send
// them through us.
var PathHeaders = [...]string{"X-Original-Url", "X-Rewrite-Url"}

// QueryParam is the query parameter that names a method (Express's
// method-override getter, Laravel, Symfony). Form bodies are not read.
const QueryParam = "_method"

// Strip removes every method-override and path-override header from r, so
// none reaches an upstream. It returns false when a method-override header
// or a `_method` query parameter names a method other than r.Method
// (ignoring ASCII case): the request must then be refused, since its
// sender meant another method than the one judged. One naming the
// request's own method is harmless (a header is removed silently, the
// parameter kept).
func Strip(r *http.Request) bool {
	for _, h := range PathHeaders {
		delete(r.Header, h)
	}
	ok := true
	if q := r.URL.RawQuery; strings.Contains(q, QueryParam) || strings.Contains(q, "%5F") || strings.Contains(q, "%5f") {
		for _, v := range r.URL.Query()[QueryParam] {
			if !strings.EqualFold(strings.TrimSpace(v), r.Method) {
				ok = false
			}
		}
	}
	for _, h := range Headers {
		vals, present := r.Header[h]
		if !present {
			continue
		}
		for _, v := range vals {
			if !strings.EqualFold(strings.TrimSpace(v), r.Method) {
				ok = false
			}
		}
		delete(r.Header, h)
	}
	return ok
}
