// Package binding is data binding (Channels 1.0's bindings): every
// committed change to a bound table reaches the groups of WebSockets that
// can see the row, and clients create, update and delete rows over a
// demultiplexer stream, writing only allow-listed fields.
//
//	items, err := binding.New(binding.Binding[Item]{
//		Model: "board.item", Stream: "items", Table: "items",
//		Fields:        []string{binding.AllFields},
//		GroupNames:    func(it Item) []string { … },
//		HasPermission: func(ctx context.Context, u session.User, action string, pk any) bool { … },
//	})
//	db, err := binding.Open(ctx, "sqlite:///var/lib/app/app.db") // or postgres://…
//	relay := &binding.Relay{DB: db, Layer: layer, Bindings: []binding.Registration{items}}
//	go relay.Run(ctx)
//	demux := &generic.Demultiplexer{
//		Options:   generic.Options{Sessions: sessions, HTTPUser: true, ConnectionGroups: …},
//		Consumers: map[string]channels.Consumer{"items": items.Consumer(db)},
//	}
//
// # Change capture
//
// Go has no model signals, so the database reports the changes itself:
// Install (which Relay.Run calls) puts row-level triggers on each bound
// table that write the row's old and new images, as JSON, into an outbox
// table, in the writer's own transaction. Every write is seen — through
// this package, an UPDATE … WHERE over many rows, psql, a migration,
// another service in another language — and only what commits is
// reported.
//
// What Install creates (the prefix is Config.TablePrefix, "channels_" by
// default): the tables <prefix>binding_outbox (pending changes),
// <prefix>binding_schema (the schema version, SchemaVersion),
// <prefix>binding_tables (the bound tables and their triggers' version)
// and, on SQLite, <prefix>binding_lease (the active relay); on SQLite the
// triggers <prefix>binding_<table>_insert, _update and _delete on each
// bound table; on PostgreSQL the function <prefix>binding_capture() and
// the trigger <prefix>binding_<table>, which also NOTIFYs the channel
// <prefix>binding. Uninstall removes them; by hand:
//
//	-- SQLite
//	DROP TRIGGER channels_binding_items_insert; DROP TRIGGER channels_binding_items_update;
//	DROP TRIGGER channels_binding_items_delete;
//	DROP TABLE channels_binding_outbox; DROP TABLE channels_binding_tables;
//	DROP TABLE channels_binding_schema; DROP TABLE channels_binding_lease;
//	-- PostgreSQL
//	DROP TRIGGER channels_binding_items ON items; DROP FUNCTION channels_binding_capture();
//	DROP TABLE channels_binding_outbox, channels_binding_tables, channels_binding_schema;
//
// SQLite's triggers name the table's columns: run Install (or restart the
// relay) after adding a column. BLOB values are recorded as hexadecimal
// text on SQLite. What row-level triggers do not see is not reported: TRUNCATE on
// PostgreSQL, and on SQLite the rows INSERT OR REPLACE deletes to make room
// (its insert is reported; an upsert with ON CONFLICT DO UPDATE is reported
// as an update).
//
// # Outbound: group diff
//
// A Relay reads the outbox in commit order per row and, for each change
// and each binding of its table, computes GroupNames of the row as it was
// persisted before the change (nothing for an insert) and of the row as
// committed (nothing for a delete), and sends
//
//   - "delete", with the old row, to the groups that saw it and no longer do;
//   - "update", with the new row, to the groups that see it before and after;
//   - "create", with the new row, to the groups that see it only now;
//
// in that order, each as a text frame
//
//	{"stream": "items", "payload": {"action": "update", "pk": 7,
//	 "data": {"title": "…", "admin_only": true}, "model": "board.item", "change_id": 1042}}
//
// "data" holds the bound fields under their JSON names (the primary key is
// "pk", never in "data"), values encoded by encoding/json: times, UUIDs and
// big.Float/big.Rat decimals are strings, booleans stored as 0/1 by SQLite
// are booleans. "change_id" identifies the change: a change is sent at
// least once, and again after a relay died between sending it and deleting
// it from the outbox, always with the same change_id. One change can send a
// socket several messages: the same one twice when the socket is in two of
// the groups, or two different ones (a "delete" through a group that lost
// sight of the row and an "update" through one that kept it; a "delete" and
// a "create" when the primary key changed). So a client drops a message
// whose change_id and action it has already applied, and applies the others
// in the order they came (delete, update, create): its copy ends as the
// committed row. Changes to one row are delivered in the order they
// committed. An UPDATE that changes a row's primary key is sent as a
// "delete" of the old key to the groups that saw the row and a "create" of
// the new key to the groups that see it.
//
// Changes made while no relay runs wait in the outbox, and are sent when
// one starts; those older than Relay.Retention (24 h by default) are
// dropped unsent, logged and counted in Stats.Expired, so the outbox is
// bounded by what a day of writes produces.
//
// # Inbound
//
// Consumer serves the binding's stream under a generic.Demultiplexer. It
// checks the request, asks HasPermission with the user of the channel
// session, and writes to the table with SQL — so its writes are reported by
// the same triggers. Only the fields the binding sends are ever written, on
// create as on update (Channels 1.0 let a create set any field); the
// primary key is never taken from data. A refused request (unknown action,
// malformed payload, permission denied, missing row) leaves the data
// untouched, is logged and counted, and is answered with an error payload
// when Binding.ReplyErrors is set.
package binding
