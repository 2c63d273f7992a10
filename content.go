package channels

import "github.com/gochannels/channels/internal/normal"

// Content is the body of a message: a map with text keys whose values are
// ASGI values.
//
// On Send a layer stores a deep copy of the content in normal form, so after
// a layer has accepted it a message's values are always one of: nil, bool,
// int64, float64, string, []byte, []any or map[string]any (never Content,
// never int). Integers of every Go integer type become int64 (a uint64 above
// MaxInt64 is refused), float32 becomes float64, Content and typed maps with
// text keys become map[string]any, typed slices and arrays become []any
// ([]byte stays bytes), and named types become their underlying type. Any
// other value is an error wrapping [ErrInvalidContent] that names the key
// where it was found. The copy is also what makes mutating a message after
// Send harmless. The message size limit is measured on the JSON encoding of
// the normal form, bytes counted as base64 text.
type Content map[string]any

// String returns the text value of key, or "" when the key is absent or not
// text.
func (c Content) String(key string) string {
	s, _ := c[key].(string)
	return s
}

// Bytes returns the bytes value of key, or nil when the key is absent or not
// bytes.
func (c Content) Bytes(key string) []byte {
	b, _ := c[key].([]byte)
	return b
}

// Int returns the integer value of key and whether there was one. Any Go
// integer type is accepted, as are float64 values that are whole numbers (JSON
// decoders produce them).
func (c Content) Int(key string) (int64, bool) { return normal.ToInt(c[key]) }

// Bool returns the boolean value of key; absent or non-boolean values are
// false.
func (c Content) Bool(key string) bool {
	b, _ := c[key].(bool)
	return b
}

// Has reports whether key is present with a non-nil value.
func (c Content) Has(key string) bool {
	v, ok := c[key]
	return ok && v != nil
}

// Clone returns a deep copy of content that is already in normal form (see
// [Content]). It does not validate; values of other types are copied by
// reference.
func (c Content) Clone() Content {
	return normal.Clone(c)
}
