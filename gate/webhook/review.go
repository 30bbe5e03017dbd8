// Package webhook is the deploy gate as a Kubernetes ValidatingAdmissionWebhook:
// it reads AdmissionReview v1 requests, maps the workload's namespace and
// service account to a policy identity, checks every container image, and
// answers within the webhook timeout.
package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxReviewBytes bounds an AdmissionReview request body (Kubernetes caps
// objects at about 1.5 MiB; this leaves room for oldObject).
const MaxReviewBytes = 8 << 20

// BreakGlassAnnotation carries a break-glass justification on the workload
// (on the Pod, or on a controller's pod template).
const BreakGlassAnnotation = "hallmark.dev/break-glass"

// ErrBadReview is the category of decoding errors.
var ErrBadReview = errors.New("bad AdmissionReview")

// Review is the subset of admission.k8s.io/v1 AdmissionReview the gate reads
// and writes.
type Review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *Request  `json:"request,omitempty"`
	Response   *Response `json:"response,omitempty"`
}

// Request is AdmissionRequest.
type Request struct {
	UID       string           `json:"uid"`
	Kind      GroupVersionKind `json:"kind"`
	Namespace string           `json:"namespace"`
	Name      string           `json:"name,omitempty"`
	Operation string           `json:"operation"`
	UserInfo  struct {
		Username string `json:"username"`
	} `json:"userInfo"`
	Object json.RawMessage `json:"object"`
	DryRun *bool           `json:"dryRun,omitempty"`
}

// GroupVersionKind names the object's type.
type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// Response is AdmissionResponse.
type Response struct {
	UID      string   `json:"uid"`
	Allowed  bool     `json:"allowed"`
	Status   *Status  `json:"status,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Status is metav1.Status, as much as an admission response uses.
type Status struct {
	Code    int32  `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Workload is what the gate needs from an admitted object.
type Workload struct {
	Kind           string
	Namespace      string
	Name           string
	ServiceAccount string
	Images         []string // every container, init container and ephemeral container image
	Justification  string   // the break-glass annotation, if any
}

type objectMeta struct {
	Name         string            `json:"name"`
	GenerateName string            `json:"generateName"`
	Namespace    string            `json:"namespace"`
	Annotations  map[string]string `json:"annotations"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type podSpec struct {
	ServiceAccountName  string      `json:"serviceAccountName"`
	DeprecatedSA        string      `json:"serviceAccount"`
	Containers          []container `json:"containers"`
	InitContainers      []container `json:"initContainers"`
	EphemeralContainers []container `json:"ephemeralContainers"`
}

type podTemplate struct {
	Metadata objectMeta `json:"metadata"`
	Spec     podSpec    `json:"spec"`
}

type object struct {
	Metadata objectMeta `json:"metadata"`
	Spec     struct {
		podSpec
		Template    *podTemplate `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template *podTemplate `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

// DecodeReview reads an AdmissionReview v1 request.
func DecodeReview(r io.Reader) (*Review, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxReviewBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReview, err)
	}
	if len(b) > MaxReviewBytes {
		return nil, fmt.Errorf("%w: body larger than %d bytes", ErrBadReview, MaxReviewBytes)
	}
	var rv Review
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&rv); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReview, err)
	}
	if rv.APIVersion != "admission.k8s.io/v1" || rv.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: apiVersion %q kind %q, want admission.k8s.io/v1 AdmissionReview", ErrBadReview, rv.APIVersion, rv.Kind)
	}
	if rv.Request == nil || rv.Request.UID == "" {
		return nil, fmt.Errorf("%w: no request or no request uid", ErrBadReview)
	}
	return &rv, nil
}

// WorkloadOf extracts the workload from a request's object: a Pod, a
// controller with spec.template (Deployment, ReplicaSet, StatefulSet,
// DaemonSet, Job, ReplicationController) or a CronJob.
func WorkloadOf(req *Request) (Workload, error) {
	w := Workload{Kind: req.Kind.Kind, Namespace: req.Namespace, Name: req.Name}
	if len(req.Object) == 0 {
		return w, fmt.Errorf("%w: request has no object", ErrBadReview)
	}
	var o object
	if err := json.Unmarshal(req.Object, &o); err != nil {
		return w, fmt.Errorf("%w: object: %v", ErrBadReview, err)
	}
	if w.Name == "" {
		w.Name = o.Metadata.Name
		if w.Name == "" {
			w.Name = o.Metadata.GenerateName
		}
	}
	if w.Namespace == "" {
		w.Namespace = o.Metadata.Namespace
	}
	spec := o.Spec.podSpec
	ann := o.Metadata.Annotations
	switch {
	case req.Kind.Kind == "Pod":
	case o.Spec.Template != nil:
		spec, ann = o.Spec.Template.Spec, merge(ann, o.Spec.Template.Metadata.Annotations)
	case o.Spec.JobTemplate != nil && o.Spec.JobTemplate.Spec.Template != nil:
		t := o.Spec.JobTemplate.Spec.Template
		spec, ann = t.Spec, merge(ann, t.Metadata.Annotations)
	default:
		return w, fmt.Errorf("%w: %s objects have no pod spec the gate understands", ErrBadReview, req.Kind.Kind)
	}
	w.ServiceAccount = spec.ServiceAccountName
	if w.ServiceAccount == "" {
		w.ServiceAccount = spec.DeprecatedSA
	}
	if w.ServiceAccount == "" {
		w.ServiceAccount = "default"
	}
	seen := map[string]bool{}
	for _, cs := range [][]container{spec.InitContainers, spec.Containers, spec.EphemeralContainers} {
		for _, c := range cs {
			if c.Image == "" {
				return w, fmt.Errorf("%w: container %q has no image", ErrBadReview, c.Name)
			}
			if !seen[c.Image] {
				seen[c.Image] = true
				w.Images = append(w.Images, c.Image)
			}
		}
	}
	if len(w.Images) == 0 {
		return w, fmt.Errorf("%w: %s %s/%s has no containers", ErrBadReview, w.Kind, w.Namespace, w.Name)
	}
	w.Justification = ann[BreakGlassAnnotation]
	return w, nil
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
