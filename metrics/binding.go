package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochannels/channels/binding"
)

// Binding returns a collector of a data-binding relay's figures
// (binding.Relay.Stats), under channels_binding_*.
func Binding(r *binding.Relay) prometheus.Collector {
	var (
		changes = desc("binding", "changes_total", "Changes (outbox rows) the relay handled.")
		sent    = desc("binding", "sent_total", "Group messages the relay sent.")
		skipped = desc("binding", "skipped_total", "Messages Serialize suppressed, or with no group.")
		errs    = desc("binding", "errors_total", "Changes that could not be decoded, invalid group names, failed rounds.")
		dropped = desc("binding", "dropped_total", "Changes the relay dropped, by reason.", "reason")
		lag     = desc("binding", "lag_seconds", "From the write of the last change sent to its sending.")
		inbound = desc("binding", "inbound_total", "Inbound requests of the relay's bindings, by outcome.", "outcome")
	)
	return &statsCollector{
		descs: []*prometheus.Desc{changes, sent, skipped, errs, dropped, lag, inbound},
		collect: func(ch chan<- prometheus.Metric) {
			st := r.Stats()
			ch <- counter(changes, st.Changes)
			ch <- counter(sent, st.Sent)
			ch <- counter(skipped, st.Skipped)
			ch <- counter(errs, st.Errors)
			ch <- counter(dropped, st.Expired, "expired")
			ch <- gauge(lag, st.Lag.Seconds())
			in := st.Inbound
			for _, o := range []struct {
				outcome string
				v       uint64
			}{
				{"created", in.Created}, {"updated", in.Updated}, {"deleted", in.Deleted},
				{"denied", in.Denied}, {"bad_action", in.BadAction}, {"malformed", in.Malformed},
				{"not_found", in.NotFound}, {"failed", in.Failed},
			} {
				ch <- counter(inbound, o.v, o.outcome)
			}
		},
	}
}

// BindingDatabaseReady returns a Check named "database" that runs
// SELECT 1 on the database of the bound tables.
func BindingDatabaseReady(db *binding.DB) Check {
	return Check{Name: "database", Func: func(ctx context.Context) error {
		_, err := db.Exec(ctx, "SELECT 1")
		return err
	}}
}
