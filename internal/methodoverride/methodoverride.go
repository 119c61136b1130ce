// Package methodoverride keeps the method a policy judged the method an
// upstream acts on. Many frameworks (Express's method-override, Rails,
// Laravel, ASP.NET and others) let a header name the method to act on: a
// POST that a gateway judged, or a GET that a CSRF check let through,
// could then run as a DELETE behind it.
package methodoverride

import (
	"net/http"
	"strings"
)

// Headers are the method-override headers in use, canonicalised.
var Headers = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// Strip removes every method-override header from r, so none reaches an
// upstream. It returns false when one of them names a method other than
// r.Method (ignoring ASCII case): the request must then be refused, since
// its sender meant another method than the one judged. A header naming
// the request's own method is harmless and removed silently.
func Strip(r *http.Request) bool {
	ok := true
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
