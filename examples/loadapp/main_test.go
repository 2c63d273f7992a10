package main

import (
	"io"
	"testing"

	"github.com/gochannels/channels/channelstest"
)

func TestProtocol(t *testing.T) {
	srv := channelstest.NewServer(t, Router())

	resp, err := srv.HTTP.Client().Get(srv.URL + "/http/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("GET /http/ = %d %q", resp.StatusCode, body)
	}

	echo := srv.DialWS("/echo/")
	echo.SendText(`{"seq":1}`)
	if got := echo.ReceiveText(); got != `{"seq":1}` {
		t.Fatalf("echo = %q", got)
	}

	a, b := srv.DialWS("/fanout/r1/"), srv.DialWS("/fanout/r1/")
	other := srv.DialWS("/fanout/r2/")
	a.SendText("x")
	if a.ReceiveText() != "x" || b.ReceiveText() != "x" {
		t.Fatal("fanout did not reach both members")
	}
	other.ReceiveNothing(100e6)
}
