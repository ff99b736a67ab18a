package rpctest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/refundd/refund-canceller/internal/clip"
)

// The admin API, under /admin/ (never reachable through /rpc/):
//
//	POST /admin/refunds               seed one refund object or an array
//	GET  /admin/refunds/{order_ref}   one order and its refund
//	GET  /admin/ledger                {"calls":[…]} every RPC call in order
//	GET  /admin/stats                 {"logins":N,"calls":{"<method>":{"<outcome>":N}}}
//	POST /admin/faults                replace the fault rules (one rule or an array; [] clears)
//	GET  /admin/faults                the rules in force
func (s *Sandbox) routeAdmin(mux *http.ServeMux) {
	mux.HandleFunc("POST /admin/refunds", s.adminSeed)
	mux.HandleFunc("GET /admin/refunds/{order_ref}", s.adminRefund)
	mux.HandleFunc("GET /admin/ledger", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]Call{"calls": s.Ledger()})
	})
	mux.HandleFunc("GET /admin/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /admin/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string][]FaultRule{"rules": s.Faults()})
	})
	mux.HandleFunc("POST /admin/faults", s.adminFaults)
}

const maxAdminBody = 8 << 20

func (s *Sandbox) adminSeed(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	var refunds []Refund
	trimmed := strings.TrimSpace(string(body))
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if strings.HasPrefix(trimmed, "[") {
		err = dec.Decode(&refunds)
	} else {
		var one Refund
		err = dec.Decode(&one)
		refunds = []Refund{one}
	}
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, "refunds: "+err.Error())
		return
	}
	if err := s.Seed(refunds...); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"seeded": len(refunds)})
}

func (s *Sandbox) adminRefund(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("order_ref")
	rf, ok := s.Refund(ref)
	if !ok {
		writeJSONError(w, http.StatusNotFound, "order "+clip.String(ref, 40)+" not found")
		return
	}
	writeJSON(w, http.StatusOK, rf)
}

func (s *Sandbox) adminFaults(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	rules, err := ParseFaultRules(body)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.faults.set(rules)
	writeJSON(w, http.StatusOK, map[string][]FaultRule{"rules": s.Faults()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
