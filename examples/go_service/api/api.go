// Package api serves the service's HTTP endpoints.
package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"example.com/go_service/greeting"
	"example.com/go_service/store"
	"example.com/go_service/version"
)

// Reply is the JSON body of a successful /hello response.
type Reply struct {
	Message string `json:"message"`
	Visits  int    `json:"visits"`
	Version string `json:"version"`
}

// Handler returns the service's HTTP handler: GET /hello?name=N and GET /healthz.
func Handler() http.Handler {
	var visits store.Counter
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "only GET is allowed", http.StatusMethodNotAllowed)
			return
		}
		name := r.URL.Query().Get("name")
		msg, err := greeting.For(name)
		if errors.Is(err, greeting.ErrBadName) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(Reply{Message: msg, Visits: visits.Visit(name), Version: version.Version})
	})
	return mux
}
