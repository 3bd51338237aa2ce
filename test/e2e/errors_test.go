package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/golang-jwt/jwt/v5"
)

// TestFrontDoorErrors checks each refusal's status and ARM error code
// through raw HTTP.
func TestFrontDoorErrors(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	group := "/subscriptions/" + sub + "/resourceGroups/errs"
	if code, _, body := s.do(http.MethodPut, group+"?api-version=2021-04-01", admin, `{"location":"westus"}`); code != 201 {
		t.Fatalf("setup: %d %s", code, body)
	}

	key, err := auth.LoadOrCreateKey(s.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k ed25519.PrivateKey, mutate func(*jwt.RegisteredClaims)) string {
		c := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{
			Issuer: auth.Issuer, Audience: jwt.ClaimStrings{auth.ManagementAudience},
			IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
		}, ObjectID: "6d0b4ec1-52a6-4b5c-9a38-4d6a7c7f0a11"}
		mutate(&c.RegisteredClaims)
		tok, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	b64 := base64.RawURLEncoding.EncodeToString
	algNone := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		b64([]byte(`{"iss":"coffer","aud":"https://management.azure.com/","oid":"6d0b4ec1-52a6-4b5c-9a38-4d6a7c7f0a11","exp":`+
			"9999999999"+`}`)) + "."
	expired := sign(key, func(c *jwt.RegisteredClaims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) })
	wrongAud := s.token("--audience", "https://vault.azure.net/")
	forged := sign(otherKey, func(*jwt.RegisteredClaims) {})
	notYet := sign(key, func(c *jwt.RegisteredClaims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) })

	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"no token", "GET", group + "?api-version=2021-04-01", "", "", 401, "AuthenticationFailed"},
		{"alg none", "GET", group + "?api-version=2021-04-01", algNone, "", 401, "InvalidAuthenticationToken"},
		{"expired", "GET", group + "?api-version=2021-04-01", expired, "", 401, "InvalidAuthenticationToken"},
		{"not yet valid", "GET", group + "?api-version=2021-04-01", notYet, "", 401, "InvalidAuthenticationToken"},
		{"wrong audience", "GET", group + "?api-version=2021-04-01", wrongAud, "", 401, "InvalidAuthenticationToken"},
		{"bad signature", "GET", group + "?api-version=2021-04-01", forged, "", 401, "InvalidAuthenticationToken"},
		{"garbage token", "GET", group + "?api-version=2021-04-01", "not-a-jwt", "", 401, "InvalidAuthenticationToken"},
		{"missing api-version", "GET", group, admin, "", 400, "MissingApiVersionParameter"},
		{"unknown api-version", "GET", group + "?api-version=1999-01-01", admin, "", 400, "InvalidApiVersionParameter"},
		{"malformed JSON", "PUT", group + "?api-version=2021-04-01", admin, `{"location":`, 400, "InvalidRequestContent"},
		{"wrong JSON type", "PUT", group + "?api-version=2021-04-01", admin, `{"location":42}`, 400, "InvalidRequestContent"},
		{"empty body", "PUT", group + "?api-version=2021-04-01", admin, "", 400, "InvalidRequestContent"},
		{"no location", "PUT", group + "2?api-version=2021-04-01", admin, `{}`, 400, "LocationRequired"},
		{"bad group name", "PUT", "/subscriptions/" + sub + "/resourceGroups/bad%21name?api-version=2021-04-01", admin, `{"location":"westus"}`, 400, "InvalidResourceGroup"},
		{"bad subscription", "PUT", "/subscriptions/not-a-guid/resourceGroups/x?api-version=2021-04-01", admin, `{"location":"westus"}`, 400, "InvalidSubscriptionId"},
		{"unknown route", "GET", "/subscriptions/" + sub + "/providers/Microsoft.Nope/things?api-version=2021-04-01", admin, "", 404, "InvalidResourceType"},
		{"wrong method", "POST", group + "?api-version=2021-04-01", admin, "", 405, "MethodNotAllowed"},
		{"missing group", "GET", "/subscriptions/" + sub + "/resourceGroups/absent?api-version=2021-04-01", admin, "", 404, "ResourceGroupNotFound"},
		{"bad skip token", "GET", "/subscriptions/" + sub + "/resourcegroups?api-version=2021-04-01&$skipToken=%25%25", admin, "", 400, "InvalidSkipToken"},
		{"bad top", "GET", "/subscriptions/" + sub + "/resourcegroups?api-version=2021-04-01&$top=0", admin, "", 400, "InvalidQueryParameterValue"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := s.do(tc.method, tc.path, tc.token, tc.body)
			if status != tc.status {
				t.Fatalf("status %d, want %d: %s", status, tc.status, body)
			}
			var ce struct {
				Error struct {
					Code           string            `json:"code"`
					Message        string            `json:"message"`
					Target         *string           `json:"target"`
					Details        []json.RawMessage `json:"details"`
					AdditionalInfo []json.RawMessage `json:"additionalInfo"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &ce); err != nil {
				t.Fatalf("not a CloudError: %q", body)
			}
			if ce.Error.Code != tc.code || ce.Error.Message == "" || ce.Error.Details == nil || ce.Error.AdditionalInfo == nil {
				t.Fatalf("error = %+v, want code %s with all fields", ce.Error, tc.code)
			}
			if h.Get("x-ms-request-id") == "" || h.Get("x-ms-correlation-request-id") == "" {
				t.Fatal("request id headers missing")
			}
			if status == 401 && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer ") {
				t.Fatalf("401 without a Bearer challenge: %q", h.Get("WWW-Authenticate"))
			}
			if strings.Contains(body, "panic") || strings.Contains(body, "InternalServerError") {
				t.Fatalf("internal error leaked: %s", body)
			}
		})
	}
	t.Run("unknown api-version lists supported", func(t *testing.T) {
		_, _, body := s.do("GET", group+"?api-version=1999-01-01", admin, "")
		if !strings.Contains(body, "2021-04-01") || !strings.Contains(body, "2025-04-01") {
			t.Fatalf("message does not list the supported versions: %s", body)
		}
	})
	t.Run("correlation id echoed", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.endpoint+group+"?api-version=2021-04-01", nil)
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("x-ms-correlation-request-id", "0f6b9a36-3c8e-4f0e-9b76-1c1f2d3e4a5b")
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("x-ms-correlation-request-id"); got != "0f6b9a36-3c8e-4f0e-9b76-1c1f2d3e4a5b" {
			t.Fatalf("correlation id %q", got)
		}
	})
	t.Run("secrets stay out of logs", func(t *testing.T) {
		if strings.Contains(s.logs.String(), admin) || strings.Contains(s.logs.String(), forged) {
			t.Fatal("a bearer token appeared in the server log")
		}
	})
}
