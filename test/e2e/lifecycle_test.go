package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
)

// TestRestartPersistence: what was created survives a clean restart.
func TestRestartPersistence(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			ctx := context.Background()
			sub := newSubscription()
			cred, opts := s.sdk(s.token())
			groups, _ := armresources.NewResourceGroupsClient(sub, cred, opts)
			if _, err := groups.CreateOrUpdate(ctx, "persist", armresources.ResourceGroup{Location: to.Ptr("westus"),
				Tags: map[string]*string{"k": to.Ptr("v")}}, nil); err != nil {
				t.Fatal(err)
			}
			// SIGTERM shuts the server down by itself, with status 0.
			if !s.stop() {
				t.Fatal("the server did not shut down cleanly on SIGTERM")
			}
			s.start()
			cred, opts = s.sdk(s.token()) // the signing key persisted too
			groups, _ = armresources.NewResourceGroupsClient(sub, cred, opts)
			got, err := groups.Get(ctx, "persist", nil)
			if err != nil || *got.Tags["k"] != "v" {
				t.Fatalf("after restart: %+v, %v", got, err)
			}
		})
	}
}

// TestKill9DuringOperation: a resource group delete in flight when the
// server is killed finishes after the restart; it never stays InProgress.
func TestKill9DuringOperation(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t), "--debug-operation-delay", "3s")
			admin := s.token()
			sub := newSubscription()
			group := "/subscriptions/" + sub + "/resourceGroups/doomed"
			if code, _, body := s.do("PUT", group+"?api-version=2021-04-01", admin, `{"location":"westus"}`); code != 201 {
				t.Fatalf("create: %d %s", code, body)
			}
			code, h, body := s.do("DELETE", group+"?api-version=2021-04-01", admin, "")
			if code != http.StatusAccepted || h.Get("Location") == "" || h.Get("Retry-After") == "" {
				t.Fatalf("delete: %d %v %s", code, h, body)
			}
			location := h.Get("Location")
			if !strings.Contains(location, "api-version=2021-04-01") {
				t.Fatalf("Location lacks the api-version: %s", location)
			}
			if code, _, _ := s.do("GET", location, admin, ""); code != http.StatusAccepted {
				t.Fatalf("operation result while running: %d, want 202", code)
			}
			_, _, body = s.do("GET", group+"?api-version=2021-04-01", admin, "")
			if !strings.Contains(body, `"Deleting"`) {
				t.Fatalf("group not Deleting during the operation: %s", body)
			}
			time.Sleep(500 * time.Millisecond)
			s.kill9()

			s.extra = nil // restart without the delay
			s.start()
			admin = s.token()
			// The endpoint's port changed; follow the same operation there.
			location = s.endpoint + location[strings.Index(location, "/subscriptions/"):]
			deadline := time.Now().Add(60 * time.Second)
			for {
				code, _, body := s.do("GET", location, admin, "")
				if code == http.StatusOK {
					break
				}
				if code != http.StatusAccepted || time.Now().After(deadline) {
					t.Fatalf("operation after restart: %d %s", code, body)
				}
				time.Sleep(200 * time.Millisecond)
			}
			if code, _, body := s.do("GET", group+"?api-version=2021-04-01", admin, ""); code != 404 {
				t.Fatalf("group still there: %d %s", code, body)
			}
		})
	}
}

// TestObservability: health without a token, metrics with one, JSON logs
// carrying the request id.
func TestObservability(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	if code, _, _ := s.do("GET", "/healthz", "", ""); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	s.do("GET", "/subscriptions/"+newSubscription()+"/resourcegroups?api-version=2021-04-01", admin, "")
	if code, _, _ := s.do("GET", "/metrics", "", ""); code != 401 {
		t.Fatalf("metrics without a token: %d", code)
	}
	code, _, body := s.do("GET", "/metrics", admin, "")
	if code != 200 || !strings.Contains(body, `coffer_http_requests_total{code="200",method="GET",route="/subscriptions/{subscriptionId}/resourceGroups"}`) ||
		!strings.Contains(body, "coffer_http_request_duration_seconds_bucket") {
		t.Fatalf("metrics: %d\n%s", code, body)
	}
	_, h, _ := s.do("GET", "/subscriptions/"+newSubscription()+"/resourcegroups?api-version=2021-04-01", admin, "")
	id := h.Get("x-ms-request-id")
	time.Sleep(100 * time.Millisecond)
	if !strings.Contains(s.logs.String(), `"request_id":"`+id+`"`) {
		t.Fatalf("request %s not in the JSON log", id)
	}
}
