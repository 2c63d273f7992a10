package gateway

import (
	"encoding/binary"
	"errors"
	"sync"

	"github.com/gochannels/channels"
)

// prepared is a reply message shared by several connections of this server
// (a group message the layer delivered once for all of them), parsed once
// and, when it is a plain text or binary frame, with that frame built once:
// header and payload, as every member's socket receives it (server frames
// are not masked). It is never modified after prepare.
type prepared struct {
	msg   channels.Content // shared: read only
	frame []byte           // the whole WebSocket frame, or nil when msg is not a plain frame
}

// prepare parses msg once for all the connections it goes to.
func prepare(msg channels.Content) *prepared {
	p := &prepared{msg: msg}
	a, bad := parseReply(msg)
	if bad == "" && a.frame != nil && !a.close {
		p.frame = appendFrame(make([]byte, 0, maxFrameHeader+len(a.frame)), a.binary, a.frame)
	}
	return p
}

// maxFrameHeader is the longest header of an unmasked WebSocket frame.
const maxFrameHeader = 10

// appendFrameHeader appends the header of a final, unmasked text or binary
// frame of n payload bytes (RFC 6455 §5.2).
func appendFrameHeader(b []byte, binaryFrame bool, n int) []byte {
	op := byte(0x81) // FIN, text
	if binaryFrame {
		op = 0x82
	}
	switch {
	case n <= 125:
		return append(b, op, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, op, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(b, op, 127), uint64(n))
	}
}

// appendFrame appends a whole final, unmasked text or binary frame.
func appendFrame(b []byte, binaryFrame bool, payload []byte) []byte {
	return append(appendFrameHeader(b, binaryFrame, len(payload)), payload...)
}

// errCloseSent is returned for a data frame written after the closing
// handshake's close frame went out: it is dropped, as the library drops it.
var errCloseSent = errors.New("gateway: close frame already sent")

// framePool holds scratch buffers in which a frame written alone is put
// together, so that it reaches the socket in one write without each
// connection keeping a buffer.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}
