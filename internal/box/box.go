// Package box puts values in interfaces (any) without an allocation per
// value.
//
// An interface holding a string, a slice or an integer above 255 points to
// a copy of the value, which the runtime allocates on its own: decoding a
// message's headers, or building them, took an allocation per value. The
// functions here return an interface that points to the caller's variable
// instead, so that many values can share one allocation (a slab: a slice
// of them, made at once).
//
// The caller must never write the variable again: an interface's value is
// immutable, and every copy of the interface shares the variable. The
// runtime builds interfaces the same way; it only allocates the copy.
package box

import "unsafe"

// eface is the layout of an interface value (any).
type eface struct{ typ, data unsafe.Pointer }

func typeOf(v any) unsafe.Pointer { return (*eface)(unsafe.Pointer(&v)).typ }

var (
	stringType = typeOf("")
	bytesType  = typeOf([]byte(nil))
	listType   = typeOf([]any(nil))
	int64Type  = typeOf(int64(0))
)

func at(typ, p unsafe.Pointer) (v any) {
	e := (*eface)(unsafe.Pointer(&v))
	e.typ, e.data = typ, p
	return v
}

// String returns *p in an interface that points to *p.
func String(p *string) any { return at(stringType, unsafe.Pointer(p)) }

// Bytes returns *p in an interface that points to *p.
func Bytes(p *[]byte) any { return at(bytesType, unsafe.Pointer(p)) }

// List returns *p in an interface that points to *p.
func List(p *[]any) any { return at(listType, unsafe.Pointer(p)) }

// Int64 returns *p in an interface that points to *p.
func Int64(p *int64) any { return at(int64Type, unsafe.Pointer(p)) }
