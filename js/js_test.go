package js

import (
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/gochannels/channels"
)

func get(t *testing.T, h http.Handler, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func TestHandlerServesEveryFileAtBothPaths(t *testing.T) {
	h := Handler()
	for _, name := range []string{Classic, Module, Types} {
		disk, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		hashed := Path(name)
		if hashed == Prefix+name || !strings.HasPrefix(hashed, Prefix) {
			t.Fatalf("Path(%q) = %q, want a content-named path under %s", name, hashed, Prefix)
		}
		for path, cache := range map[string]string{Prefix + name: "no-cache", hashed: "public, max-age=31536000, immutable"} {
			res := get(t, h, path)
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 || string(body) != string(disk) {
				t.Fatalf("GET %s: %d, %d bytes; want 200 and the file (%d bytes)", path, res.StatusCode, len(body), len(disk))
			}
			if got := res.Header.Get("Cache-Control"); got != cache {
				t.Errorf("GET %s: Cache-Control %q, want %q", path, got, cache)
			}
			if ct := res.Header.Get("Content-Type"); name != Types && ct != "text/javascript; charset=utf-8" {
				t.Errorf("GET %s: Content-Type %q", path, ct)
			}
			if res.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("GET %s: no Access-Control-Allow-Origin: *", path)
			}
			// Revalidation of the stable name costs no body.
			res = get(t, h, path, "If-None-Match", res.Header.Get("ETag"))
			if res.StatusCode != http.StatusNotModified {
				t.Errorf("GET %s with its ETag: %d, want 304", path, res.StatusCode)
			}
		}
		sum := sha512.Sum384(disk)
		if want := "sha384-" + base64.StdEncoding.EncodeToString(sum[:]); Integrity(name) != want {
			t.Errorf("Integrity(%q) = %q, want %q", name, Integrity(name), want)
		}
	}
}

func TestHandlerRefusesOtherPaths(t *testing.T) {
	h := Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) }))
	for path, want := range map[string]int{
		Prefix + "websocketbridge.000000000000.js": 404, // a hash that is not the content's
		Prefix + "build.mjs":                       404,
		Prefix + "package.json":                    404,
		Prefix:                                     404,
		"/static/other.js":                         299, // passed on
		"/":                                        299,
	} {
		if res := get(t, h, path); res.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, res.StatusCode, want)
		}
	}
	req := httptest.NewRequest(http.MethodPost, Prefix+Classic, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
}

func TestScriptTag(t *testing.T) {
	tag := string(ScriptTag())
	want := `<script src="` + Path(Classic) + `" integrity="` + Integrity(Classic) + `" crossorigin="anonymous"></script>`
	if tag != want {
		t.Fatalf("ScriptTag() = %s, want %s", tag, want)
	}
}

// The Go package, package.json and the script state one version.
func TestVersionsAgree(t *testing.T) {
	b, err := os.ReadFile("package.json")
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	if Version != channels.Version {
		t.Errorf("Version %q, channels.Version %q", Version, channels.Version)
	}
	if pkg.Version != Version {
		t.Errorf("package.json version %q, Version %q", pkg.Version, Version)
	}
	for _, name := range []string{Classic, Module} {
		if !strings.Contains(string(Content(name)), `const version = "`+Version+`";`) {
			t.Errorf("%s does not declare version %q", name, Version)
		}
	}
}
