package binding

import (
	"bytes"
	"database/sql"
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

var (
	timeType      = reflect.TypeFor[time.Time]()
	scannerType   = reflect.TypeFor[sql.Scanner]()
	unmarshalType = reflect.TypeFor[json.Unmarshaler]()
	textUnmarType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// timeLayouts are the forms times take in row images and inbound data:
// RFC 3339 (PostgreSQL's to_jsonb, JSON clients), what the modernc SQLite
// driver writes for a time.Time, and SQLite's own datetime() text.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999 -0700 MST",
	"2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02 15:04",
	"2006-01-02",
}

// setField stores the JSON value raw in the struct field fv, converting
// what JSON decoding alone does not: 0/1 to bool (SQLite has no boolean),
// text to time.Time in the databases' forms, numbers to text (decimals),
// text to numbers, and anything to a sql.Scanner.
func setField(fv reflect.Value, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		fv.SetZero()
		return nil
	}
	if fv.Kind() == reflect.Pointer {
		if fv.IsNil() {
			fv.Set(reflect.New(fv.Type().Elem()))
		}
		return setField(fv.Elem(), raw)
	}
	ptr := fv.Addr()
	t := fv.Type()
	if t == timeType {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s is not a time", raw)
		}
		tm, err := parseTime(s)
		if err != nil {
			return err
		}
		fv.Set(reflect.ValueOf(tm))
		return nil
	}
	err := json.Unmarshal(raw, ptr.Interface())
	if err == nil {
		return nil
	}
	// The conversions JSON decoding does not make.
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return err
	}
	switch {
	case ptr.Type().Implements(scannerType) && !t.Implements(unmarshalType):
		sv := v
		if n, ok := v.(json.Number); ok {
			if i, ierr := n.Int64(); ierr == nil {
				sv = i
			} else if f, ferr := n.Float64(); ferr == nil {
				sv = f
			}
		}
		return ptr.Interface().(sql.Scanner).Scan(sv)
	case ptr.Type().Implements(textUnmarType):
		if n, ok := v.(json.Number); ok {
			return ptr.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n))
		}
	}
	switch t.Kind() {
	case reflect.Bool:
		switch x := v.(type) {
		case json.Number:
			f, ferr := x.Float64()
			if ferr != nil {
				return err
			}
			fv.SetBool(f != 0)
			return nil
		case string:
			b, berr := strconv.ParseBool(strings.TrimSpace(x))
			if berr != nil {
				return err
			}
			fv.SetBool(b)
			return nil
		}
	case reflect.String:
		if n, ok := v.(json.Number); ok {
			fv.SetString(string(n))
			return nil
		}
		if b, ok := v.(bool); ok {
			fv.SetString(strconv.FormatBool(b))
			return nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if s, ok := v.(string); ok {
			i, ierr := strconv.ParseInt(strings.TrimSpace(s), 10, t.Bits())
			if ierr != nil {
				return err
			}
			fv.SetInt(i)
			return nil
		}
		if b, ok := v.(bool); ok {
			fv.SetInt(map[bool]int64{false: 0, true: 1}[b])
			return nil
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if s, ok := v.(string); ok {
			u, uerr := strconv.ParseUint(strings.TrimSpace(s), 10, t.Bits())
			if uerr != nil {
				return err
			}
			fv.SetUint(u)
			return nil
		}
	case reflect.Float32, reflect.Float64:
		if s, ok := v.(string); ok {
			f, ferr := strconv.ParseFloat(strings.TrimSpace(s), t.Bits())
			if ferr != nil {
				return err
			}
			fv.SetFloat(f)
			return nil
		}
	}
	return err
}

func parseTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if tm, err := time.Parse(l, s); err == nil {
			return tm, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time in a known form", s)
}
