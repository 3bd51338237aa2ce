package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// ManagementAudience is the audience Azure clients request tokens for.
const ManagementAudience = "https://management.azure.com/"

// Issuer is the iss claim of tokens coffer signs itself.
const Issuer = "coffer"

// Principal is an authenticated caller.
type Principal struct {
	ObjectID string // the oid claim: what role assignments name
	TenantID string
	Name     string
}

// Claims are the JWT claims coffer reads and writes.
type Claims struct {
	jwt.RegisteredClaims
	ObjectID string `json:"oid,omitempty"`
	TenantID string `json:"tid,omitempty"`
	Name     string `json:"name,omitempty"`
}

// KeyFile is where the token signing key lives inside the data directory.
const KeyFile = "keys/token-signing.pem"

// LoadOrCreateKey reads the Ed25519 signing key in dataDir, creating it
// (mode 0600) on first use.
func LoadOrCreateKey(dataDir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dataDir, KeyFile)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := writeFileExclusive(path, data); err != nil {
			if errors.Is(err, os.ErrExist) { // another process won the race
				return LoadOrCreateKey(dataDir)
			}
			return nil, err
		}
		return priv, nil
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("%s: not PEM", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key", path)
	}
	return priv, nil
}

func writeFileExclusive(path string, data []byte) error {
	tmp := path + ".tmp-" + uuid.NewString()
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	defer os.Remove(tmp)
	// Link fails if path exists, so two processes never overwrite each
	// other's key.
	return os.Link(tmp, path)
}

// Signer mints tokens with the data directory's key.
type Signer struct {
	Key      ed25519.PrivateKey
	TenantID string
	Audience string
	Clock    clock.Clock
}

// Mint returns a signed token for principal oid valid for ttl.
func (s Signer) Mint(oid, name string, ttl time.Duration) (string, error) {
	if _, err := uuid.Parse(oid); err != nil {
		return "", errs.E(errs.Invalid, "InvalidPrincipalId", "the principal id '%s' is not a GUID", oid)
	}
	if ttl <= 0 {
		return "", errs.E(errs.Invalid, "InvalidTTL", "the token lifetime must be positive, not %s", ttl)
	}
	aud := s.Audience
	if aud == "" {
		aud = ManagementAudience
	}
	now := s.Clock.Now()
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   oid,
			Audience:  jwt.ClaimStrings{aud},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        uuid.NewString(),
		},
		ObjectID: oid,
		TenantID: s.TenantID,
		Name:     name,
	}
	return jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(s.Key)
}

// Verifier checks bearer tokens.
type Verifier struct {
	Key       ed25519.PublicKey
	Audiences []string // accepted aud values; empty means ManagementAudience
	Clock     clock.Clock
	// OIDC, when set, verifies tokens from an external issuer.
	OIDC *oidc.IDTokenVerifier
}

// NewOIDC discovers issuer and returns a verifier for its tokens. The
// audience is checked by Verifier, not by go-oidc, so several are allowed.
func NewOIDC(ctx context.Context, issuer string) (*oidc.IDTokenVerifier, error) {
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc issuer %s: %w", issuer, err)
	}
	return p.Verifier(&oidc.Config{SkipClientIDCheck: true}), nil
}

func invalidToken(format string, args ...any) *errs.Error {
	return errs.E(errs.Unauthenticated, "InvalidAuthenticationToken", format, args...)
}

// Verify checks raw and returns its principal, or an errs.Unauthenticated
// error whose message says what was wrong with the token (never the token).
func (v Verifier) Verify(ctx context.Context, raw string) (Principal, error) {
	auds := v.Audiences
	if len(auds) == 0 {
		auds = []string{ManagementAudience}
	}
	var unverified Claims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &unverified); err != nil {
		return Principal{}, invalidToken("The access token is malformed.")
	}
	if v.OIDC != nil && unverified.Issuer != Issuer {
		return v.verifyOIDC(ctx, raw, auds)
	}
	var claims Claims
	_, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return v.Key, nil },
		jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithAudience(auds...),
		jwt.WithIssuer(Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30*time.Second),
		jwt.WithTimeFunc(v.Clock.Now),
	)
	if err != nil {
		return Principal{}, describe(err)
	}
	return principalOf(claims)
}

func (v Verifier) verifyOIDC(ctx context.Context, raw string, auds []string) (Principal, error) {
	tok, err := v.OIDC.Verify(ctx, raw)
	if err != nil {
		if strings.Contains(err.Error(), "expired") {
			return Principal{}, invalidToken("The token is expired.")
		}
		return Principal{}, invalidToken("The token could not be verified by the configured issuer.")
	}
	if !audienceMatches(tok.Audience, auds) {
		return Principal{}, invalidToken("The access token has an invalid audience. Accepted audiences: %s.", strings.Join(auds, ", "))
	}
	var claims Claims
	if err := tok.Claims(&claims); err != nil {
		return Principal{}, invalidToken("The token claims are malformed.")
	}
	return principalOf(claims)
}

func audienceMatches(got, want []string) bool {
	for _, g := range got {
		for _, w := range want {
			if strings.EqualFold(strings.TrimSuffix(g, "/"), strings.TrimSuffix(w, "/")) {
				return true
			}
		}
	}
	return false
}

func principalOf(c Claims) (Principal, error) {
	oid := c.ObjectID
	if oid == "" {
		oid = c.Subject
	}
	if oid == "" {
		return Principal{}, invalidToken("The access token has no 'oid' claim.")
	}
	return Principal{ObjectID: strings.ToLower(oid), TenantID: c.TenantID, Name: c.Name}, nil
}

func describe(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidToken("The token is expired.")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return invalidToken("The token is not valid yet.")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalidToken("The access token has an invalid audience.")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return invalidToken("The access token signature is invalid or its algorithm is not accepted.")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalidToken("The access token is from an issuer this server does not trust.")
	default:
		return invalidToken("The access token is invalid.")
	}
}
