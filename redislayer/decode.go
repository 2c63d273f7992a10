package redislayer

import (
	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/wire"
)

// zeroCopyMax is the largest member whose strings share its memory (see
// wire.UnmarshalString).
const zeroCopyMax = wire.ZeroCopyMax

// decodeBody decodes a msgpack map (a message body) with the rules of
// wire.Unmarshal; text values of small bodies share the body's memory.
func decodeBody(body string) (channels.Content, error) {
	return wire.UnmarshalString(body)
}
