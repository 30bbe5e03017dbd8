package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hallmark-build/hallmark/gate"
	"github.com/hallmark-build/hallmark/gate/policy"
)

// Handler answers AdmissionReview requests. It is an http.Handler.
type Handler struct {
	gate     *gate.Gate
	timeout  time.Duration
	identity func(namespace, serviceAccount string) string
}

// Option configures a Handler.
type Option func(*Handler)

// WithTimeout sets the time the handler takes at most per review (default
// 8s, under Kubernetes' default webhook timeout of 10s). Images not decided
// in time are denied with a reason saying so.
func WithTimeout(d time.Duration) Option { return func(h *Handler) { h.timeout = d } }

// WithIdentity sets the mapping from namespace and service account to a
// policy identity (default "namespace/serviceaccount").
func WithIdentity(f func(namespace, serviceAccount string) string) Option {
	return func(h *Handler) { h.identity = f }
}

// New makes a handler deciding with g.
func New(g *gate.Gate, opts ...Option) *Handler {
	h := &Handler{gate: g, timeout: 8 * time.Second, identity: func(ns, sa string) string { return ns + "/" + sa }}
	for _, o := range opts {
		o(h)
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	rv, err := DecodeReview(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	resp := h.Review(ctx, rv.Request)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(Review{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview", Response: resp})
}

// Review decides one admission request: every image must be admitted.
func (h *Handler) Review(ctx context.Context, req *Request) *Response {
	resp := &Response{UID: req.UID}
	if req.Operation == "DELETE" {
		resp.Allowed = true
		return resp
	}
	wl, err := WorkloadOf(req)
	if err != nil {
		resp.Status = &Status{Code: http.StatusBadRequest, Reason: "BadRequest", Message: "hallmark gate: " + err.Error()}
		return resp
	}
	identity := h.identity(wl.Namespace, wl.ServiceAccount)
	decisions := make([]policy.Decision, len(wl.Images))
	var wg sync.WaitGroup
	for i, img := range wl.Images {
		wg.Add(1)
		go func() {
			defer wg.Done()
			decisions[i] = h.gate.Check(ctx, gate.Request{
				Identity: identity, Image: img, Justification: wl.Justification,
				Workload: wl.Namespace + "/" + wl.Kind + "/" + wl.Name, User: req.UserInfo.Username, RequestUID: req.UID,
			})
		}()
	}
	wg.Wait()
	resp.Allowed = true
	var denied []string
	for i, d := range decisions {
		if ctx.Err() != nil && !d.Allow {
			d.Violations = append(d.Violations, policy.Reason{Code: policy.CodeVerification, Message: fmt.Sprintf("not decided within the webhook timeout %s", h.timeout)})
		}
		if !d.Allow {
			resp.Allowed = false
			denied = append(denied, fmt.Sprintf("image %s: %s", wl.Images[i], joinReasons(d.Violations)))
			continue
		}
		for _, n := range d.Notes {
			resp.Warnings = append(resp.Warnings, fmt.Sprintf("hallmark: image %s: %s", wl.Images[i], n.Message))
		}
		for _, v := range d.Violations {
			resp.Warnings = append(resp.Warnings, fmt.Sprintf("hallmark: image %s: %s", wl.Images[i], v))
		}
	}
	if !resp.Allowed {
		resp.Warnings = nil
		resp.Status = &Status{Code: http.StatusForbidden, Reason: "Forbidden",
			Message: fmt.Sprintf("hallmark gate denied %s %s/%s as identity %q: %s", wl.Kind, wl.Namespace, wl.Name, identity, strings.Join(denied, "; "))}
	}
	return resp
}

func joinReasons(rs []policy.Reason) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}
