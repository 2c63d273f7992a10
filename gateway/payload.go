package gateway

import (
	"bytes"
	"io"
	"strings"
	"sync"
	"unicode/utf8"
)

// payloadChunk is the unit in which incoming WebSocket messages are read.
// A message longer than one chunk is collected in further chunks, never in
// a buffer that doubles: a message over MaxMessageSize, which the library
// refuses only once it has read MaxMessageSize+1 bytes, must not cost twice
// that in memory first.
const payloadChunk = 32 << 10

var chunkPool = sync.Pool{New: func() any { return new([payloadChunk]byte) }}

// payload is one incoming message, read into pooled chunks. It is used by
// one goroutine; release returns the chunks.
type payload struct {
	chunks []*[payloadChunk]byte
	n      int // bytes read
}

// readFrom reads r to its end.
func (p *payload) readFrom(r io.Reader) error {
	for {
		off := p.n - (len(p.chunks)-1)*payloadChunk
		if len(p.chunks) == 0 || off == payloadChunk {
			p.chunks = append(p.chunks, chunkPool.Get().(*[payloadChunk]byte))
			off = 0
		}
		m, err := r.Read(p.chunks[len(p.chunks)-1][off:])
		p.n += m
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// last is the part of the last chunk in use.
func (p *payload) last() []byte {
	if len(p.chunks) == 0 {
		return nil
	}
	return p.chunks[len(p.chunks)-1][:p.n-(len(p.chunks)-1)*payloadChunk]
}

// bytes returns a copy of the message.
func (p *payload) bytes() []byte {
	if len(p.chunks) <= 1 {
		return bytes.Clone(p.last())
	}
	b := make([]byte, 0, p.n)
	for _, c := range p.chunks[:len(p.chunks)-1] {
		b = append(b, c[:]...)
	}
	return append(b, p.last()...)
}

// text returns the message as a string, and whether it is valid UTF-8.
func (p *payload) text() (string, bool) {
	if len(p.chunks) <= 1 {
		b := p.last()
		if !utf8.Valid(b) {
			return "", false
		}
		return string(b), true
	}
	var sb strings.Builder
	sb.Grow(p.n)
	for _, c := range p.chunks[:len(p.chunks)-1] {
		sb.Write(c[:])
	}
	sb.Write(p.last())
	s := sb.String()
	return s, utf8.ValidString(s)
}

// release returns the chunks to the pool; p is empty afterwards.
func (p *payload) release() {
	for i, c := range p.chunks {
		chunkPool.Put(c)
		p.chunks[i] = nil
	}
	p.chunks = p.chunks[:0]
	p.n = 0
}
