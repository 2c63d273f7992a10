package binding

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/gochannels/channels/session"
)

// AllFields is the value of Binding.Fields that binds every field of the
// struct (Django Channels' "__all__"): Fields: []string{binding.AllFields}.
const AllFields = "__all__"

// The actions of a binding message, outbound and inbound.
const (
	ActionCreate = "create"
	ActionUpdate = "update"
	ActionDelete = "delete"
)

// ErrInvalidBinding is wrapped by the errors New returns for a declaration
// that cannot work.
var ErrInvalidBinding = errors.New("binding: invalid binding")

// Binding declares how the rows of one database table, read into values of
// the struct type T, are bound to groups of WebSockets. Fill in the fields
// and pass it to New, which checks the declaration and returns the binding
// to give to a Relay (outbound) and to a generic.Demultiplexer (inbound,
// through Consumer).
//
// The struct's exported fields are the row's columns: the column is named
// by the field's `db` tag, else by its `json` tag's name, else by the
// field's name in lower case; `db:"-"` leaves the field out. Its JSON name
// on the wire is the `json` tag's name, else the column name. A field the
// table lacks is left at its zero value.
type Binding[T any] struct {
	// Model is the model label sent in every payload, like Django's
	// "app_label.model_name" ("board.item"). Required.
	Model string
	// Stream is the demultiplexer stream the messages travel on.
	// Required.
	Stream string
	// Table is the bound table: letters, digits and '_', not starting
	// with a digit. Required.
	Table string
	// PK is the primary key's column. Empty means "id". The struct must
	// have a field for it. The key is sent as "pk", never inside "data".
	PK string

	// Fields lists the JSON names of the fields sent in "data" and
	// written by inbound create and update; []string{AllFields} means
	// every field but the primary key.
	Fields []string
	// Exclude lists the JSON names of fields never sent nor written; every
	// other field is. Exactly one of Fields and Exclude must be set.
	Exclude []string

	// GroupNames returns the groups that may see v as it is (Channels 1.0's
	// group_names). The relay calls it on the row as it was before a
	// change and on the row as committed, and sends "delete" to the groups
	// that lost sight of it, "update" to those that keep it and "create" to
	// those that gained it. Required.
	GroupNames func(v T) []string

	// HasPermission reports whether user may perform action ("create",
	// "update" or "delete") on the row with primary key pk (nil for
	// create) through the inbound consumer. user comes from the channel
	// session (session.UserFrom), session.Anonymous without a login. Nil
	// refuses every inbound request.
	HasPermission func(ctx context.Context, user session.User, action string, pk any) bool

	// Members adds computed values to "data" (Channels'
	// send_members): each function is called with the object and its
	// result sent under the map key, with "." replaced by "__"
	// ("author.name" becomes "author__name"). A member never replaces a
	// serialized field.
	Members map[string]func(v T) any

	// Serialize, when set, gets the "data" map about to be sent for v
	// and returns the one to send; nil suppresses the message (Channels'
	// serialize returning {}).
	Serialize func(action string, v T, data map[string]any) map[string]any

	// NewPK, when set, makes the primary key of a row created through the
	// inbound consumer (for keys the database does not generate, such as
	// UUIDs). Nil leaves the key to the database.
	NewPK func() any

	// ReplyErrors answers an inbound request that was refused (unknown
	// action, malformed payload, permission denied, row not found, database
	// error) with an error payload to the sender, on the same stream:
	// {"action": action, "pk": pk, "error": reason, "detail": text}.
	// Without it the sender hears nothing (Channels 1.0's behaviour); the
	// refusal is logged and counted either way.
	ReplyErrors bool

	// Logger receives the binding's logs. Nil means slog.Default().
	Logger *slog.Logger

	c *compiled[T]
}

// Registration is what a Relay needs from a binding: the non-generic face
// of a *Binding[T] returned by New. Only this package implements it.
type Registration interface {
	entry() *entry
}

// entry is the non-generic part of a binding, used by the relay and the
// schema code.
type entry struct {
	model, stream, table, pk string
	columns                  []string // every mapped column, in field order
	log                      *slog.Logger
	// messages decodes one outbox row into the messages to send.
	messages func(op string, oldImg, newImg []byte, changeID int64) ([]groupMessage, error)
	inbound  *inboundStats
}

// groupMessage is one message to one group.
type groupMessage struct {
	group string
	text  string
}

// field is one mapped struct field.
type field struct {
	index  []int
	column string
	name   string // JSON name on the wire
	typ    reflect.Type
}

type compiled[T any] struct {
	fields  []field
	byName  map[string]*field // JSON name -> field
	pk      *field
	sent    []*field // fields in "data", in order
	allowed map[string]*field
	members []member[T]
	e       entry
}

type member[T any] struct {
	key string
	fn  func(T) any
}

// New checks the declaration b and returns the binding, ready for a Relay
// and for Consumer. It fails, wrapping ErrInvalidBinding, when a required
// field is missing, when neither or both of Fields and Exclude are set
// (there is deliberately no default to every field), when Fields or Exclude
// names a field T does not have, or when T is not a struct.
func New[T any](b Binding[T]) (*Binding[T], error) {
	bad := func(format string, args ...any) (*Binding[T], error) {
		return nil, fmt.Errorf("%w %q: %s", ErrInvalidBinding, b.Model, fmt.Sprintf(format, args...))
	}
	if b.Model == "" {
		return bad("Model is required")
	}
	if b.Stream == "" {
		return bad("Stream is required")
	}
	if !validIdent(b.Table) {
		return bad("Table %q: use letters, digits and '_', not starting with a digit", b.Table)
	}
	if b.PK == "" {
		b.PK = "id"
	}
	if !validIdent(b.PK) {
		return bad("PK %q: use letters, digits and '_', not starting with a digit", b.PK)
	}
	if b.GroupNames == nil {
		return bad("GroupNames is required")
	}
	switch {
	case b.Fields == nil && b.Exclude == nil:
		return bad("set Fields (binding.AllFields for every field) or Exclude")
	case b.Fields != nil && b.Exclude != nil:
		return bad("set Fields or Exclude, not both")
	}
	var zero T
	t := reflect.TypeOf(&zero).Elem()
	if t.Kind() != reflect.Struct {
		return bad("%s is not a struct type", t)
	}
	c := &compiled[T]{byName: map[string]*field{}, allowed: map[string]*field{}}
	for _, sf := range reflect.VisibleFields(t) {
		if !sf.IsExported() || sf.Anonymous {
			continue
		}
		dbTag := sf.Tag.Get("db")
		if dbTag == "-" {
			continue
		}
		jsonName, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if jsonName == "-" {
			jsonName = ""
		}
		col, _, _ := strings.Cut(dbTag, ",")
		if col == "" {
			col = jsonName
		}
		if col == "" {
			col = strings.ToLower(sf.Name)
		}
		if !validIdent(col) {
			return bad("field %s: column %q: use letters, digits and '_'", sf.Name, col)
		}
		if jsonName == "" {
			jsonName = col
		}
		c.fields = append(c.fields, field{index: sf.Index, column: col, name: jsonName, typ: sf.Type})
	}
	for i := range c.fields {
		f := &c.fields[i]
		if _, dup := c.byName[f.name]; dup {
			return bad("two fields are named %q", f.name)
		}
		c.byName[f.name] = f
		if f.column == b.PK {
			c.pk = f
		}
	}
	if c.pk == nil {
		return bad("%s has no field for the primary key column %q", t, b.PK)
	}
	all := len(b.Fields) == 1 && b.Fields[0] == AllFields
	for _, n := range b.Fields {
		if n == AllFields && !all {
			return bad("AllFields must be the only entry of Fields")
		}
		if _, ok := c.byName[n]; !ok && !all {
			return bad("Fields names %q, which %s does not have", n, t)
		}
	}
	for _, n := range b.Exclude {
		if _, ok := c.byName[n]; !ok {
			return bad("Exclude names %q, which %s does not have", n, t)
		}
	}
	for i := range c.fields {
		f := &c.fields[i]
		if f == c.pk {
			continue
		}
		in := all || slices.Contains(b.Fields, f.name)
		if b.Fields == nil {
			in = !slices.Contains(b.Exclude, f.name)
		}
		if in {
			c.sent = append(c.sent, f)
			c.allowed[f.name] = f
		}
	}
	keys := make([]string, 0, len(b.Members))
	for k := range b.Members {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if b.Members[k] == nil {
			return bad("Members[%q] is nil", k)
		}
		c.members = append(c.members, member[T]{strings.ReplaceAll(k, ".", "__"), b.Members[k]})
	}
	log := b.Logger
	if log == nil {
		log = slog.Default()
	}
	out := b
	c.e = entry{
		model: b.Model, stream: b.Stream, table: b.Table, pk: b.PK, log: log,
		inbound: &inboundStats{},
	}
	for _, f := range c.fields {
		c.e.columns = append(c.e.columns, f.column)
	}
	out.c = c
	bp := &out
	c.e.messages = bp.messages
	return bp, nil
}

func (b *Binding[T]) entry() *entry {
	if b == nil || b.c == nil {
		return nil
	}
	return &b.c.e
}

// String returns the binding's model label, stream and table.
func (b *Binding[T]) String() string {
	return fmt.Sprintf("binding %s (stream %q, table %s)", b.Model, b.Stream, b.Table)
}

func validIdent(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Payload is the "payload" object of a binding message on the wire:
//
//	{"stream": s, "payload": {"action": a, "pk": pk, "data": {...}, "model": m, "change_id": id}}
//
// ChangeID identifies the database change the message reports; a change
// sent again after a relay crash carries the same ID, so clients can drop
// duplicates. It is 0 in messages not made from a change.
type Payload struct {
	Action   string         `json:"action"`
	PK       any            `json:"pk"`
	Data     map[string]any `json:"data"`
	Model    string         `json:"model"`
	ChangeID int64          `json:"change_id,omitempty"`
}

// Envelope is a binding message as a client receives it in a text frame.
type Envelope struct {
	Stream  string  `json:"stream"`
	Payload Payload `json:"payload"`
}

// Payload returns the payload for v and action, as the relay sends it
// (without a change ID), and false when Serialize suppresses it.
func (b *Binding[T]) Payload(action string, v T) (Payload, bool) {
	if b.c == nil {
		return Payload{}, false
	}
	return b.payload(action, v, 0)
}

func (b *Binding[T]) payload(action string, v T, changeID int64) (Payload, bool) {
	rv := reflect.ValueOf(&v).Elem()
	data := make(map[string]any, len(b.c.sent)+len(b.c.members))
	for _, f := range b.c.sent {
		data[f.name] = rv.FieldByIndex(f.index).Interface()
	}
	for _, m := range b.c.members {
		if _, taken := data[m.key]; !taken {
			data[m.key] = m.fn(v)
		}
	}
	if b.Serialize != nil {
		data = b.Serialize(action, v, data)
		if data == nil {
			return Payload{}, false
		}
	}
	return Payload{
		Action:   action,
		PK:       rv.FieldByIndex(b.c.pk.index).Interface(),
		Data:     data,
		Model:    b.Model,
		ChangeID: changeID,
	}, true
}

// Decode reads a row image, a JSON object of column names to values as the
// change-capture triggers record it, into a T. It accepts what SQLite and
// PostgreSQL put there: 0 and 1 for booleans, times as text in the forms
// both databases and the Go drivers write, numbers for text fields
// (decimals), and text for numeric fields.
func (b *Binding[T]) Decode(image []byte) (T, error) {
	var v T
	if b.c == nil {
		return v, fmt.Errorf("%w: not created with binding.New", ErrInvalidBinding)
	}
	var cols map[string]json.RawMessage
	if err := json.Unmarshal(image, &cols); err != nil {
		return v, fmt.Errorf("binding: %s: row image: %w", b.Model, err)
	}
	rv := reflect.ValueOf(&v).Elem()
	for _, f := range b.c.fields {
		raw, ok := cols[f.column]
		if !ok {
			continue
		}
		if err := setField(rv.FieldByIndex(f.index), raw); err != nil {
			return v, fmt.Errorf("binding: %s: column %s: %w", b.Model, f.column, err)
		}
	}
	return v, nil
}

// messages turns one outbox row into the messages to send, by group diff:
// "delete" to the groups of the old row that the new one lacks, "update" to
// the groups of both, "create" to the groups of the new row that the old
// one lacked, in that order.
func (b *Binding[T]) messages(op string, oldImg, newImg []byte, changeID int64) ([]groupMessage, error) {
	var (
		oldV, newV         T
		oldGroups, newGrps []string
	)
	if op != "I" && oldImg != nil {
		v, err := b.Decode(oldImg)
		if err != nil {
			return nil, err
		}
		oldV, oldGroups = v, b.GroupNames(v)
	}
	if op != "D" && newImg != nil {
		v, err := b.Decode(newImg)
		if err != nil {
			return nil, err
		}
		newV, newGrps = v, b.GroupNames(v)
	}
	del, upd, cre := diff(oldGroups, newGrps)
	if op == "U" && oldImg != nil && newImg != nil && b.pkChanged(oldV, newV) {
		// A new primary key is another object to the clients: the old one
		// is deleted wherever it was seen and the new one created.
		del, upd, cre = set(oldGroups), nil, set(newGrps)
	}
	var out []groupMessage
	add := func(action string, v T, groups []string) error {
		if len(groups) == 0 {
			return nil
		}
		p, ok := b.payload(action, v, changeID)
		if !ok {
			return nil
		}
		text, err := json.Marshal(Envelope{Stream: b.Stream, Payload: p})
		if err != nil {
			return fmt.Errorf("binding: %s: encode %s: %w", b.Model, action, err)
		}
		for _, g := range groups {
			out = append(out, groupMessage{group: g, text: string(text)})
		}
		return nil
	}
	if err := add(ActionDelete, oldV, del); err != nil {
		return nil, err
	}
	if err := add(ActionUpdate, newV, upd); err != nil {
		return nil, err
	}
	if err := add(ActionCreate, newV, cre); err != nil {
		return nil, err
	}
	return out, nil
}

func (b *Binding[T]) pkChanged(oldV, newV T) bool {
	o := reflect.ValueOf(&oldV).Elem().FieldByIndex(b.c.pk.index)
	n := reflect.ValueOf(&newV).Elem().FieldByIndex(b.c.pk.index)
	return !reflect.DeepEqual(o.Interface(), n.Interface())
}

// diff returns old−new, old∩new and new−old, each sorted and without
// repeats.
func diff(oldGroups, newGroups []string) (del, upd, cre []string) {
	o := set(oldGroups)
	n := set(newGroups)
	for _, g := range o {
		if slices.Contains(n, g) {
			upd = append(upd, g)
		} else {
			del = append(del, g)
		}
	}
	for _, g := range n {
		if !slices.Contains(o, g) {
			cre = append(cre, g)
		}
	}
	return del, upd, cre
}

func set(groups []string) []string {
	s := slices.Clone(groups)
	slices.Sort(s)
	return slices.Compact(s)
}
