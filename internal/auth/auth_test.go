package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/golang-jwt/jwt/v5"
)

const oid = "6d0b4ec1-52a6-4b5c-9a38-4d6a7c7f0a11"

func TestKeyIsCreatedOnceAndPrivate(t *testing.T) {
	dir := t.TempDir()
	k1, err := auth.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := auth.LoadOrCreateKey(dir)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("second load gave another key: %v", err)
	}
	st, err := os.Stat(filepath.Join(dir, auth.KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", st.Mode(), err)
	}
}

func TestMintAndVerify(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	fake := clock.NewFake(now)
	signer := auth.Signer{Key: key, TenantID: "t1", Clock: fake}
	verifier := auth.Verifier{Key: key.Public().(ed25519.PublicKey), Clock: fake,
		Audiences: []string{auth.ManagementAudience, "https://coffer.example:8443"}}
	ctx := context.Background()

	tok, err := signer.Mint(strings.ToUpper(oid), "alice", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := verifier.Verify(ctx, tok)
	if err != nil || p.ObjectID != oid || p.TenantID != "t1" || p.Name != "alice" {
		t.Fatalf("verify: %+v %v", p, err)
	}
	fake.Advance(2 * time.Hour)
	if _, err := verifier.Verify(ctx, tok); !strings.Contains(errMsg(err), "expired") {
		t.Fatalf("expired token: %v", err)
	}
	endpointTok, _ := auth.Signer{Key: key, Audience: "https://coffer.example:8443", Clock: fake}.Mint(oid, "", time.Minute)
	if _, err := verifier.Verify(ctx, endpointTok); err != nil {
		t.Fatalf("endpoint audience refused: %v", err)
	}
	if _, err := signer.Mint("not-a-guid", "", time.Hour); !errs.Is(err, errs.Invalid) {
		t.Fatalf("bad principal: %v", err)
	}
	if _, err := signer.Mint(oid, "", 0); !errs.Is(err, errs.Invalid) {
		t.Fatalf("zero ttl: %v", err)
	}
}

func errMsg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// issuer is a minimal OIDC provider on loopback: discovery and JWKS, with
// an RSA key, like Entra ID or Keycloak publish.
type issuer struct {
	srv *httptest.Server
	key *rsa.PrivateKey
}

func newIssuer(t *testing.T) *issuer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/keys",
			"authorization_endpoint": is.srv.URL + "/auth", "token_endpoint": is.srv.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		b64 := base64.RawURLEncoding.EncodeToString
		json.NewEncoder(w).Encode(map[string]any{"keys": []any{map[string]string{
			"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
			"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
		}}})
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) token(t *testing.T, aud string, exp time.Time) string {
	claims := jwt.MapClaims{"iss": is.srv.URL, "aud": aud, "oid": oid, "tid": "tenant-x", "sub": "s",
		"iat": time.Now().Unix(), "exp": exp.Unix()}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = "k1"
	s, err := tok.SignedString(is.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOIDCIssuer(t *testing.T) {
	is := newIssuer(t)
	ctx := context.Background()
	v, err := auth.NewOIDC(ctx, is.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, local, _ := ed25519.GenerateKey(rand.Reader)
	verifier := auth.Verifier{Key: local.Public().(ed25519.PublicKey), Clock: clock.Real{}, OIDC: v}

	p, err := verifier.Verify(ctx, is.token(t, auth.ManagementAudience, time.Now().Add(time.Hour)))
	if err != nil || p.ObjectID != oid || p.TenantID != "tenant-x" {
		t.Fatalf("issuer token: %+v %v", p, err)
	}
	if _, err := verifier.Verify(ctx, is.token(t, "https://graph.microsoft.com/", time.Now().Add(time.Hour))); !strings.Contains(errMsg(err), "audience") {
		t.Fatalf("wrong audience: %v", err)
	}
	if _, err := verifier.Verify(ctx, is.token(t, auth.ManagementAudience, time.Now().Add(-time.Hour))); !strings.Contains(errMsg(err), "expired") {
		t.Fatalf("expired: %v", err)
	}
	// A token signed by another RSA key but claiming the issuer is refused.
	other := &issuer{srv: is.srv}
	other.key, _ = rsa.GenerateKey(rand.Reader, 2048)
	if _, err := verifier.Verify(ctx, other.token(t, auth.ManagementAudience, time.Now().Add(time.Hour))); !errs.Is(err, errs.Unauthenticated) {
		t.Fatalf("forged issuer token: %v", err)
	}
	// Local tokens still work beside the issuer.
	local2, _ := auth.Signer{Key: local, Clock: clock.Real{}}.Mint(oid, "", time.Minute)
	if _, err := verifier.Verify(ctx, local2); err != nil {
		t.Fatalf("local token beside OIDC: %v", err)
	}
}
