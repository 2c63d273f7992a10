package js_test

import (
	"fmt"
	"html/template"
	"net/http"
	"os"
	"strings"

	"github.com/gochannels/channels/js"
)

// A page written with html/template loads the client from its
// content-named path, with its integrity hash.
func ExampleScriptTag() {
	page := template.Must(template.New("page").Parse(`<head>{{.Script}}</head>`))
	var b strings.Builder
	_ = page.Execute(&b, map[string]any{"Script": js.ScriptTag()})
	fmt.Println(strings.Contains(b.String(), `src="`+js.Path(js.Classic)+`"`))
	fmt.Println(strings.Contains(b.String(), `integrity="sha384-`))
	// Output:
	// true
	// true
}

// An application that serves its own HTTP (not through runserver or
// gateway, which already do) puts the client in front of its handler.
func ExampleWrap() {
	app := http.NewServeMux()
	app.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "the app") })
	srv := &http.Server{Addr: "127.0.0.1:8000", Handler: js.Wrap(app)}
	_ = srv // srv.ListenAndServe()
	fmt.Fprintln(os.Stdout, js.Prefix+js.Classic)
	// Output: /static/channels/js/websocketbridge.js
}
