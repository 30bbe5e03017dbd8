package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hallmark-build/hallmark/gate"
	"github.com/hallmark-build/hallmark/gate/audit"
	"github.com/hallmark-build/hallmark/gate/policy"
	"github.com/hallmark-build/hallmark/gate/verify"
	"github.com/hallmark-build/hallmark/gate/webhook"
	"github.com/hallmark-build/hallmark/signer/dsse"
	"github.com/hallmark-build/hallmark/signer/publish"
	"github.com/hallmark-build/hallmark/signer/publish/publishtest"
)

const testPolicy = `apiVersion: hallmark.dev/gate/v1
global:
  defaults:
    builders: ["https://hallmark.build/farm/test"]
    maxAge: 24h
identities:
  prod/frontend:
    sources:
      - repository: https://git.example.com/mono
        pathPrefixes: ["services/frontend"]
  prod/audited:
    mode: audit
  prod/emergency:
    mode: break-glass
`

// podReview is an AdmissionReview as the API server sends it for a Pod.
func podReview(uid, ns, sa string, annotations map[string]string, images ...string) []byte {
	var cs []map[string]any
	for i, img := range images {
		cs = append(cs, map[string]any{"name": fmt.Sprintf("c%d", i), "image": img, "resources": map[string]any{}, "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"})
	}
	pod := map[string]any{
		"kind": "Pod", "apiVersion": "v1",
		"metadata": map[string]any{"name": "web-1", "namespace": ns, "uid": "b1e2", "creationTimestamp": nil, "labels": map[string]string{"app": "web"}, "annotations": annotations},
		"spec":     map[string]any{"containers": cs, "serviceAccountName": sa, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"},
		"status":   map[string]any{},
	}
	rv := map[string]any{
		"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1",
		"request": map[string]any{
			"uid":         uid,
			"kind":        map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":    map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"requestKind": map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"name":        "web-1", "namespace": ns, "operation": "CREATE",
			"userInfo": map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "u1", "groups": []string{"system:serviceaccounts"}},
			"object":   pod, "oldObject": nil, "dryRun": false,
			"options": map[string]any{"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
		},
	}
	b, _ := json.Marshal(rv)
	return b
}

func TestWebhook(t *testing.T) {
	ctx := context.Background()
	host := publishtest.Registry(t, true)
	key := publishtest.NewKey(t)
	signed := host + "/team/frontend:v1"
	dir, dig, size := publishtest.Layout(t, t.TempDir(), publishtest.Image(t))
	if _, err := publish.Push(ctx, dir, publishtest.Sign(t, key, publishtest.Facts(dig.Hex, size, time.Now().Add(-time.Hour))), signed); err != nil {
		t.Fatal(err)
	}
	unsigned := host + "/team/unsigned:v1"
	if err := remote.Write(mustRef(t, unsigned), publishtest.Image(t)); err != nil {
		t.Fatal(err)
	}
	kv, err := verify.KeyFromPEM(key.PublicPEM())
	if err != nil {
		t.Fatal(err)
	}
	ver, err := verify.New(verify.StaticTrust{Verifiers: []dsse.Verifier{kv}})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Parse([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "audit.jsonl")
	alog, err := audit.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer alog.Close()
	g, err := gate.New(ver, pol, gate.WithAudit(alog))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(webhook.New(g))
	defer srv.Close()

	for _, tc := range []struct {
		name      string
		body      []byte
		allowed   bool
		inMessage string
	}{
		{"SignedAllowed", podReview("u1", "prod", "frontend", nil, signed), true, ""},
		{"SignedByDigestAllowed", podReview("u2", "prod", "frontend", nil, host+"/team/frontend@"+dig.String()), true, ""},
		{"UnsignedDenied", podReview("u3", "prod", "frontend", nil, unsigned), false, "unsigned image"},
		{"OneBadImageDeniesThePod", podReview("u4", "prod", "frontend", nil, signed, unsigned), false, "team/unsigned"},
		{"NoPolicyForIdentity", podReview("u5", "prod", "default", nil, signed), false, "NO_POLICY"},
		{"AuditAdmitsUnsigned", podReview("u6", "prod", "audited", nil, unsigned), true, ""},
		{"BreakGlassWithoutJustification", podReview("u7", "prod", "emergency", nil, unsigned), false, "no justification"},
		{"BreakGlassWithJustification", podReview("u8", "prod", "emergency", map[string]string{webhook.BreakGlassAnnotation: "INC-42: outage"}, unsigned), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := srv.Client().Post(srv.URL+"/validate", "application/json", bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("HTTP %d", resp.StatusCode)
			}
			var rv webhook.Review
			if err := json.NewDecoder(resp.Body).Decode(&rv); err != nil {
				t.Fatal(err)
			}
			var req struct{ Request struct{ UID string } }
			json.Unmarshal(tc.body, &req)
			if rv.Response == nil || rv.Response.UID != req.Request.UID || rv.APIVersion != "admission.k8s.io/v1" {
				t.Fatalf("response %+v does not answer request %s", rv, req.Request.UID)
			}
			if rv.Response.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v; status %+v", rv.Response.Allowed, tc.allowed, rv.Response.Status)
			}
			if tc.inMessage != "" && (rv.Response.Status == nil || !strings.Contains(rv.Response.Status.Message, tc.inMessage)) {
				t.Fatalf("status %+v does not mention %q", rv.Response.Status, tc.inMessage)
			}
		})
	}

	t.Run("BreakGlassRecorded", func(t *testing.T) {
		found := false
		audit.Read(logPath, func(r audit.Record) error {
			if r.Kind == audit.KindBreakGlass && r.Facts.Justification == "INC-42: outage" && r.Decision.Review && r.RequestUID == "u8" {
				found = true
			}
			return nil
		})
		if !found {
			t.Fatal("no break-glass record with the justification in the audit log")
		}
	})

	t.Run("RecheckAfterPolicyChange", func(t *testing.T) {
		if got, err := g.Recheck(ctx, logPath); err != nil || len(got) != 2 {
			// The audit-mode and break-glass admissions of the unsigned image
			// are the findings before any change.
			t.Fatalf("Recheck before the change = %v, %v; want the 2 admitted violations", got, err)
		}
		stricter := strings.Replace(testPolicy, `["services/frontend"]`, `["services/frontend/api"]`, 1)
		p2, err := policy.Parse([]byte(stricter))
		if err != nil {
			t.Fatal(err)
		}
		g.SetPolicy(p2)
		got, err := g.Recheck(ctx, logPath)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, f := range got {
			if f.Identity == "prod/frontend" {
				n++
				if !strings.Contains(fmt.Sprint(f.Decision.Violations), "outside the accepted path prefixes") {
					t.Fatalf("finding %+v does not name the path", f)
				}
			}
		}
		if n != 1 {
			t.Fatalf("Recheck after the policy change reported %d prod/frontend workloads, want 1: %+v", n, got)
		}
	})
}

func TestDecodeReviewRejects(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"NotJSON", "<xml/>"},
		{"WrongVersion", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`},
		{"NoRequest", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := webhook.DecodeReview(strings.NewReader(tc.body)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzReview(f *testing.F) {
	f.Add(podReview("u", "ns", "sa", map[string]string{"a": "b"}, "reg/x:1", "reg/y@sha256:"+strings.Repeat("a", 64)))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"Deployment"},"object":{"spec":{"template":{"spec":{"containers":[{"image":"a"}]}}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"kind":"CronJob"},"object":{"spec":{"jobTemplate":{"spec":{"template":null}}}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rv, err := webhook.DecodeReview(bytes.NewReader(b))
		if err != nil {
			return
		}
		w, err := webhook.WorkloadOf(rv.Request)
		if err != nil {
			return
		}
		if len(w.Images) == 0 || w.ServiceAccount == "" {
			t.Fatalf("workload without images or service account: %+v", w)
		}
		for _, img := range w.Images {
			if img == "" {
				t.Fatal("empty image accepted")
			}
		}
	})
}

func mustRef(t *testing.T, s string) name.Reference {
	r, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
