// Package js embeds the project's JavaScript client, WebSocketBridge, and
// serves it over HTTP, so that every page of an application can load it
// from the server that carries its WebSockets.
//
// Handler serves the files under Prefix, each at two paths:
//
//   - /static/channels/js/websocketbridge.js, the stable name (the path
//     Django Channels used), revalidated on every use (ETag, no-cache);
//   - /static/channels/js/websocketbridge.<hash>.js, named by the file's
//     content, cached for a year as immutable.
//
// The files are websocketbridge.js (classic script: the global
// `channels`), websocketbridge.mjs (the same as an ES module) and
// websocketbridge.d.ts (TypeScript declarations). Pages should load the
// hashed path with its Subresource Integrity hash; ScriptTag writes such a
// tag and Path and Integrity give the parts. The cli package's runserver
// and gateway roles serve Handler in front of the application (Wrap).
package js

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"strings"
	"time"
)

// Prefix is the URL path under which Handler serves the files.
const Prefix = "/static/channels/js/"

// Version is the library's version, the project's (channels.Version);
// package.json and the script's `version` export carry the same.
const Version = "0.1.0"

// The file names.
const (
	Classic = "websocketbridge.js"   // classic script defining the global channels
	Module  = "websocketbridge.mjs"  // ES module
	Types   = "websocketbridge.d.ts" // TypeScript declarations
)

//go:embed websocketbridge.js websocketbridge.mjs websocketbridge.d.ts
var files embed.FS

// file is one served file.
type file struct {
	name, hashed string // base names: stable and content-named
	body         []byte
	etag         string
	integrity    string
	contentType  string
}

var (
	byName = map[string]*file{} // stable and hashed base names
	names  = map[string]*file{} // stable names only
	// modTime is when the process started: content does not change while
	// it runs, and the ETag carries the content's identity.
	modTime = time.Now()
)

func init() {
	for _, name := range []string{Classic, Module, Types} {
		body, err := files.ReadFile(name)
		if err != nil {
			panic(fmt.Sprintf("js: embedded %s: %v", name, err))
		}
		sum := sha256.Sum256(body)
		short := hex.EncodeToString(sum[:])[:12]
		dot := strings.IndexByte(name, '.')
		f := &file{
			name:      name,
			hashed:    name[:dot] + "." + short + name[dot:],
			body:      body,
			etag:      `"` + short + `"`,
			integrity: integrityOf(body),
		}
		if strings.HasSuffix(name, ".d.ts") {
			f.contentType = "text/plain; charset=utf-8"
		} else {
			f.contentType = "text/javascript; charset=utf-8"
		}
		names[name] = f
		byName[name] = f
		byName[f.hashed] = f
	}
}

func integrityOf(body []byte) string {
	sum := sha512.Sum384(body)
	return "sha384-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Path returns the content-named path of the file name (Classic, Module or
// Types), for example "/static/channels/js/websocketbridge.3f2a…c1.js", or
// "" for another name.
func Path(name string) string {
	if f := names[name]; f != nil {
		return Prefix + f.hashed
	}
	return ""
}

// Integrity returns the Subresource Integrity value ("sha384-…") of the
// file name, or "" for another name.
func Integrity(name string) string {
	if f := names[name]; f != nil {
		return f.integrity
	}
	return ""
}

// Content returns the embedded file name, or nil for another name.
func Content(name string) []byte {
	if f := names[name]; f != nil {
		return bytes.Clone(f.body)
	}
	return nil
}

// ScriptTag returns a script element that loads the classic build from
// its content-named path with its integrity hash, for html/template pages:
// after it, the page has the global `channels`.
func ScriptTag() template.HTML {
	return template.HTML(fmt.Sprintf(`<script src="%s" integrity="%s" crossorigin="anonymous"></script>`, Path(Classic), Integrity(Classic)))
}

// Handler serves the files under Prefix (a request for another path gets
// 404): content-named paths with "Cache-Control: public, max-age=31536000,
// immutable", stable names with "no-cache" and an ETag. Responses allow
// any origin (Access-Control-Allow-Origin: *), so that pages of other
// origins can load the files with an integrity check.
func Handler() http.Handler { return http.HandlerFunc(serve) }

// Wrap returns a handler that serves the files under Prefix and passes
// every other request to next.
func Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, Prefix) {
			serve(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, Prefix)
	f := byName[rest]
	if !ok || f == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("ETag", f.etag)
	if rest == f.hashed {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	http.ServeContent(w, r, f.name, modTime, bytes.NewReader(f.body))
}
