// Command chat is a multi-room chat on Channels for Go: open
// http://127.0.0.1:8000/, pick a room and a name, and talk. Each room is a
// group; joining and leaving are announced to the room.
//
// In development everything runs in one process on the in-memory layer:
//
//	go run ./examples/chat
//
// In production the roles run separately and meet in Redis:
//
//	export CHANNELS_LAYER=redis://127.0.0.1:6379/0
//	go run ./examples/chat gateway -p 8000
//	go run ./examples/chat runworker --threads 8
package main

import "github.com/gochannels/channels/cli"

func main() { cli.Main(Router()) }
