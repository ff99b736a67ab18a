package ops

import (
	"context"
	"errors"
	"html/template"
	"net/http"

	"github.com/refundd/refund-canceller/internal/orderref"
	"github.com/refundd/refund-canceller/internal/taskview"
)

// OrdersPath is the dashboard's page that finds an order's cancellations:
// GET /monitoring/orders?ref=<order_ref> lists them, newest refund first,
// each linked to its task's Asynqmon page (while asynq holds the task).
const OrdersPath = DashboardPath + "/orders"

// OrderFinder finds an order's cancellations; *taskview.Lookup is one.
type OrderFinder interface {
	Order(ctx context.Context, orderRef string) ([]taskview.View, error)
}

var ordersPage = template.Must(template.New("orders").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>refundd — order {{.Ref}}</title>
<style>body{font:14px sans-serif;margin:2em}td,th{padding:.3em .8em;text-align:left;border-bottom:1px solid #ddd}</style></head>
<body><p><a href="{{.Root}}/">← dashboard</a></p>
<form method="get" action="{{.Path}}"><label>Order reference <input name="ref" value="{{.Ref}}" autofocus></label> <button>Find</button></form>
{{if .Problem}}<p id="problem">{{.Problem}}</p>{{end}}
{{if .Views}}<h1>Order {{.Ref}}: {{len .Views}} cancellation(s), newest refund first</h1>
<table id="cancellations"><tr><th>refund initiated at</th><th>state</th><th>outcome</th><th>task</th><th>refund ID</th><th>reason</th></tr>
{{range .Views}}<tr class="cancellation"><td>{{.RefundInitiatedAt}}</td><td>{{.State}}</td><td>{{.Outcome}}</td>
<td>{{if eq .State "gone"}}{{.TaskID}}{{else}}<a href="{{$.Root}}/queues/{{.Queue | urlquery}}/tasks/{{.TaskID | urlquery}}">{{.TaskID}}</a>{{end}}</td>
<td>{{if .Result}}{{.Result.RefundID}}{{end}}</td><td>{{if .Result}}{{.Result.Reason}}{{end}}</td></tr>
{{end}}</table>{{end}}
</body></html>`))

// orders serves OrdersPath: the same lookup as GET /v1/cancellations/{ref}.
func orders(f OrderFinder) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := struct {
			Root, Path, Ref, Problem string
			Views                    []taskview.View
		}{Root: DashboardPath, Path: OrdersPath, Ref: r.URL.Query().Get("ref")}
		status := http.StatusOK
		switch {
		case data.Ref == "":
		case !orderref.Valid(data.Ref):
			status, data.Problem = http.StatusBadRequest, "An order reference is "+orderref.Want+"."
		default:
			views, err := f.Order(r.Context(), data.Ref)
			switch {
			case errors.Is(err, taskview.ErrNotFound):
				status, data.Problem = http.StatusNotFound, "No cancellation of order "+data.Ref+"."
			case err != nil:
				status, data.Problem = http.StatusServiceUnavailable, "The queue is unavailable; try again."
			}
			data.Views = views
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		_ = ordersPage.Execute(w, data)
	})
}
