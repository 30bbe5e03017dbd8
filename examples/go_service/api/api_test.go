package api_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"example.com/go_service/api"
)

func TestHello(t *testing.T) {
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()

	// testdata/hello_world.golden is a data dependency of this test.
	want, err := os.ReadFile("testdata/hello_world.golden")
	if err != nil {
		t.Fatalf("reading golden file (a data dependency): %v", err)
	}
	for i, wantBody := range []string{string(want), strings.Replace(string(want), `"visits":1`, `"visits":2`, 1)} {
		resp, err := http.Get(srv.URL + "/hello?name=world")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != wantBody {
			t.Errorf("request %d: got %d %q, want 200 %q", i, resp.StatusCode, body, wantBody)
		}
	}

	resp, err := http.Get(srv.URL + "/hello?name=")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("empty name: status %d, want 400", resp.StatusCode)
	}
}
