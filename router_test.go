package channels_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/google/go-cmp/cmp"
)

// named is a consumer that records its name in the message.
type named string

func (n named) Consume(ctx context.Context, m *channels.Message) error {
	m.Content["consumed_by"] = string(n)
	return nil
}

func (n named) Name() string { return string(n) }

// classConsumer is a consumer that lists its channels (route_class).
type classConsumer struct{ named }

func (classConsumer) Channels() []string { return []string{"test.channel"} }

func match(t *testing.T, r *channels.Router, channel string, c channels.Content) (string, map[string]string) {
	t.Helper()
	cons, values, ok := r.Match(channels.NewMessage(nil, channel, c))
	if !ok {
		return "", nil
	}
	return channels.ConsumerName(cons), values
}

func TestRouterSpecTable(t *testing.T) {
	c1, c2, c3 := named("c1"), named("c2"), named("c3")

	r := channels.NewRouter()
	r.Route("http.request", c1)
	r.Route("http.disconnect", c2)
	if got, v := match(t, r, "http.request", channels.Content{}); got != "c1" || len(v) != 0 {
		t.Errorf("plain routes: http.request {} -> %s %v; want c1", got, v)
	}
	if got, _ := match(t, r, "http.request", channels.Content{"path": "/chat/"}); got != "c1" {
		t.Errorf("plain routes: http.request /chat/ -> %s; want c1", got)
	}

	r = channels.NewRouter()
	r.Route("http.request", c1, channels.Path(`^/chat/$`))
	r.Route("http.disconnect", c2)
	r.Route("http.request", c3)
	for _, tc := range []struct {
		content channels.Content
		want    string
	}{
		{channels.Content{"path": "/chat/"}, "c1"},
		{channels.Content{}, "c3"},
		{channels.Content{"path": "/liveblog/"}, "c3"},
		{channels.Content{"path": []byte("/chat/")}, "c1"}, // bytes matched as ASCII
	} {
		if got, _ := match(t, r, "http.request", tc.content); got != tc.want {
			t.Errorf("filtered routes: %v -> %s; want %s", tc.content, got, tc.want)
		}
	}

	inner := channels.NewRouter()
	inner.Route("websocket.connect", c2, channels.Path(`^/chat/(?P<room>[^/]+)/$`))
	inner.Route("websocket.connect", c3, channels.Path(`^/mentions/$`))
	r = channels.NewRouter()
	r.Include(inner)
	for _, tc := range []struct {
		path   string
		want   string
		values map[string]string
	}{
		{"/chat/django/", "c2", map[string]string{"room": "django"}},
		{"/boom/", "", nil},
	} {
		got, v := match(t, r, "websocket.connect", channels.Content{"path": tc.path})
		if got != tc.want || (tc.want != "" && !cmp.Equal(v, tc.values)) {
			t.Errorf("include: %s -> %s %v; want %s %v", tc.path, got, v, tc.want, tc.values)
		}
	}

	r = channels.NewRouter()
	r.Include(inner, channels.Path(`^/ws/v(?P<version>[0-9]+)`))
	for _, tc := range []struct {
		path   string
		want   string
		values map[string]string
	}{
		{"/ws/v2/chat/django/", "c2", map[string]string{"version": "2", "room": "django"}},
		{"/ws/v1/mentions/", "c3", map[string]string{"version": "1"}},
		{"/chat/django/", "", nil},
	} {
		got, v := match(t, r, "websocket.connect", channels.Content{"path": tc.path})
		if got != tc.want || (tc.want != "" && !cmp.Equal(v, tc.values)) {
			t.Errorf("include with prefix: %s -> %s %v; want %s %v", tc.path, got, v, tc.want, tc.values)
		}
	}

	// Inner patterns without ^ still match at the start of what is left.
	inner2 := channels.NewRouter()
	inner2.Route("websocket.connect", c2, channels.Path(`/chat/(?P<room>[^/]+)/$`))
	r = channels.NewRouter()
	r.Include(inner2, channels.Path(`/ws/v(?P<version>[0-9]+)`))
	if got, v := match(t, r, "websocket.connect", channels.Content{"path": "/ws/v2/chat/django/"}); got != "c2" || v["room"] != "django" || v["version"] != "2" {
		t.Errorf("unanchored include: -> %s %v; want c2 room=django version=2", got, v)
	}

	// route_class: channels come from the consumer.
	k := classConsumer{named("K")}
	r = channels.NewRouter()
	r.Handle(k, channels.Path(`^/foobar/$`))
	if got, _ := match(t, r, "test.channel", channels.Content{"path": "/foobar/"}); got != "K" {
		t.Errorf("class route: test.channel /foobar/ -> %q; want K", got)
	}
	if got, _ := match(t, r, "websocket.connect", channels.Content{"path": "/foobar/"}); got != "" {
		t.Errorf("class route: websocket.connect -> %q; want no match", got)
	}
	if got, _ := match(t, r, "test.channel", channels.Content{"path": "/"}); got != "" {
		t.Errorf("class route: test.channel / -> %q; want no match", got)
	}
}

func TestRouterChannels(t *testing.T) {
	r := channels.NewRouter()
	r.Route("http.request", named("c1"), channels.Path(`^/chat/$`))
	r.Route("http.disconnect", named("c2"))
	r.Route("http.request", named("c3"))
	r.Handle(classConsumer{named("K")})
	want := []string{"http.disconnect", "http.request", "test.channel"}
	if diff := cmp.Diff(want, r.Channels()); diff != "" {
		t.Errorf("Channels (-want +got):\n%s", diff)
	}
	r.Route("websocket.receive", named("c4"))
	want = append(want, "websocket.receive")
	if diff := cmp.Diff(want, r.Channels()); diff != "" {
		t.Errorf("Channels after adding a route (-want +got):\n%s", diff)
	}
	sub := channels.NewRouter()
	sub.Route("sub.only", named("s"))
	r.Include(sub, channels.Path("/x"))
	if got := r.Channels(); !slices.Contains(got, "sub.only") {
		t.Errorf("Channels after Include = %v; want sub.only listed", got)
	}
}

func TestRouterRejectsBadRoutes(t *testing.T) {
	for name, add := range map[string]func(r *channels.Router){
		"unnamed group": func(r *channels.Router) {
			r.Route("http.request", named("c1"), channels.Path(`^/chat/([^/]+)/$`))
		},
		"bad regexp":   func(r *channels.Router) { r.Route("http.request", named("c1"), channels.Path(`^/chat/(`)) },
		"bad channel":  func(r *channels.Router) { r.Route("http request", named("c1")) },
		"no channels":  func(r *channels.Router) { r.Handle(noChannels{}) },
		"self include": func(r *channels.Router) { r.Include(r) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("route was accepted")
				}
			}()
			add(channels.NewRouter())
		})
	}
	// A non-capturing group is fine.
	channels.NewRouter().Route("http.request", named("c1"), channels.Path(`^/(?:a|b)/$`))
}

type noChannels struct{ named }

func (noChannels) Channels() []string { return nil }

func TestRouterConsumeSetsValuesAndReportsNoRoute(t *testing.T) {
	r := channels.NewRouter()
	var got map[string]string
	var consumer string
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		got = m.PathValues()
		consumer = m.Consumer()
		return nil
	}, channels.Path(`^/room/(?P<room>[a-z]+)/$`), channels.Key("text", `(?P<word>\w+)`))
	m := channels.NewMessage(nil, "websocket.receive", channels.Content{"path": "/room/lobby/", "text": "hello there"})
	if err := r.Consume(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"room": "lobby", "word": "hello"}, got); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if m.PathValue("room") != "lobby" || consumer == "" {
		t.Errorf("PathValue(room) = %q, consumer %q", m.PathValue("room"), consumer)
	}
	err := r.Consume(context.Background(), channels.NewMessage(nil, "websocket.receive", channels.Content{"path": "/nope/"}))
	if !errors.Is(err, channels.ErrNoRoute) {
		t.Errorf("unmatched message: %v; want ErrNoRoute", err)
	}
	// A key whose value is not text does not match.
	err = r.Consume(context.Background(), channels.NewMessage(nil, "websocket.receive", channels.Content{"path": int64(3)}))
	if !errors.Is(err, channels.ErrNoRoute) {
		t.Errorf("non-text path: %v; want ErrNoRoute", err)
	}
}

func TestWithDefaults(t *testing.T) {
	app := channels.NewRouter()
	app.Route("websocket.connect", named("mine"), channels.Path(`^/chat/$`))
	r := channels.WithDefaults(app, nil)
	if got, _ := match(t, r, "websocket.connect", channels.Content{"path": "/chat/"}); got != "mine" {
		t.Errorf("the application's route did not win: %s", got)
	}
	want := []string{"http.disconnect", "http.request", "websocket.connect", "websocket.disconnect", "websocket.receive"}
	if diff := cmp.Diff(want, r.Channels()); diff != "" {
		t.Errorf("Channels (-want +got):\n%s", diff)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		channel string
		want    channels.Content
	}{
		// The application routes sockets, none on /other/: rejected.
		{"websocket.connect", channels.Content{"close": true}},
		{"http.request", nil},
	} {
		var runner channels.Runner
		l := newLayer(t, inmemory.Config{})
		m := channels.NewMessage(l, tc.channel, channels.Content{"path": "/other/", "reply_channel": "x!y"})
		if err := runner.Run(ctx, r, m); err != nil && !errors.Is(err, channels.ErrUnroutedConnection) {
			t.Fatal(err)
		}
		got := poll(t, l, "x!y")
		if tc.want != nil && !cmp.Equal(tc.want, got) {
			t.Errorf("%s default replied %v; want %v", tc.channel, got, tc.want)
		}
		if tc.channel == "http.request" && got["status"] != int64(404) {
			t.Errorf("http.request default replied %v; want a 404", got)
		}
	}
}
