package browser

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

func TestBrowserLoadsLoopbackPage(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `<title>hello</title><script>console.log("ready")</script>`)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	b := Start(t, Options{})
	b.MustDo(chromedp.Navigate("http://" + ln.Addr().String() + "/"))
	if title := MustGet(b, chromedp.Title()); title != "hello" {
		t.Fatalf("title %q", title)
	}
	// Names outside loopback do not resolve: the browser cannot leave.
	if err := b.Do(chromedp.Navigate("http://example.com/")); err == nil {
		if loc := MustGet(b, chromedp.Location()); loc == "http://example.com/" {
			if body := Eval[string](b, "document.body ? document.body.innerText : ''"); body != "" && !strings.Contains(body, "ERR_NAME_NOT_RESOLVED") {
				t.Fatalf("the browser reached example.com: %q", body)
			}
		}
	}
}
