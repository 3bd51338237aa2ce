package blobapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
)

// SAS constants. sasVersion is what Azure puts in a disk SAS; clients only
// echo it, so a fixed value keeps the URLs looking like the ones they expect.
const (
	sasVersion  = "2018-03-28"
	sasResource = "b"
	// BlobName is the only blob under an access, as on Azure managed disks.
	BlobName = "abcd"
	// MinKeyLen is the shortest Signer key accepted, in bytes.
	MinKeyLen = 32
	// sigDomain separates these MACs from anything else the key might sign.
	sigDomain = "coffer/blobapi/sas/v1"
)

// Azure's message for every authentication failure; clients match the code,
// people read the AuthenticationErrorDetail.
const msgAuthFailed = "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature."

// Grant is what one SAS URL allows.
type Grant struct {
	AccessID   string    // random, names the grant so it can be revoked; see NewAccessID
	ResourceID string    // ARM id of the disk or snapshot; may be empty
	Write      bool      // read-write (an upload) rather than read-only
	Expires    time.Time // kept at one-second precision, in UTC
}

// Signer issues and checks SAS URLs. The zero value is unusable: Key must be
// at least MinKeyLen random bytes and Clock set, or Verify refuses everything.
type Signer struct {
	Key   []byte
	Clock clock.Clock
}

// NewAccessID returns a fresh access id: 128 random bits in lowercase hex,
// safe in a URL path and unguessable.
func NewAccessID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("blobapi: access id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// URL returns the SAS URL for g under base (scheme://host[/prefix]).
// Expires is cut to whole seconds, so Verify returns it that way.
func (s Signer) URL(base string, g Grant) string {
	se := g.Expires.UTC().Format(time.RFC3339)
	sp := permission(g.Write)
	var b strings.Builder
	b.WriteString(strings.TrimRight(base, "/"))
	b.WriteString("/sas/")
	b.WriteString(url.PathEscape(g.AccessID))
	b.WriteString("/" + BlobName + "?sv=" + sasVersion + "&sr=" + sasResource + "&sp=" + sp)
	b.WriteString("&se=" + url.QueryEscape(se))
	if g.ResourceID != "" {
		b.WriteString("&rid=" + url.QueryEscape(g.ResourceID))
	}
	b.WriteString("&sig=" + base64.RawURLEncoding.EncodeToString(s.mac(g.AccessID, g.ResourceID, sp, se)))
	return b.String()
}

// Verify checks the SAS query q presented for accessID and returns the grant
// it proves. Failures are errs.Forbidden with code AuthenticationFailed and an
// AuthenticationErrorDetail; a misconfigured Signer is errs.Internal. Verify
// does not know about revocation; see Lookup.
func (s Signer) Verify(accessID string, q url.Values) (Grant, error) {
	if len(s.Key) < MinKeyLen || s.Clock == nil {
		return Grant{}, errs.E(errs.Internal, "InternalError", "SAS signer is not configured").
			Wrap(fmt.Errorf("blobapi: signer key is %d bytes (need %d) or clock is nil", len(s.Key), MinKeyLen))
	}
	if accessID == "" {
		return Grant{}, authFailed("The access id is missing from the URL.")
	}
	fields := map[string]string{}
	for _, name := range []string{"sv", "sr", "sp", "se", "rid", "sig"} {
		switch vs := q[name]; len(vs) {
		case 0:
			if name != "rid" {
				return Grant{}, authFailed(name + " is mandatory. Cannot be empty")
			}
		case 1:
			fields[name] = vs[0]
		default:
			return Grant{}, authFailed(name + " is given more than once.")
		}
	}
	if fields["sv"] != sasVersion {
		return Grant{}, authFailed("sv must be " + sasVersion + ".")
	}
	if fields["sr"] != sasResource {
		return Grant{}, authFailed("sr must be " + sasResource + ".")
	}
	sp := fields["sp"]
	if sp != "r" && sp != "rw" {
		return Grant{}, authFailed("sp must be r or rw.")
	}
	sig, err := base64.RawURLEncoding.DecodeString(fields["sig"])
	if err != nil || !hmac.Equal(sig, s.mac(accessID, fields["rid"], sp, fields["se"])) {
		return Grant{}, authFailed("Signature did not match.")
	}
	// Parsed only after the MAC matched: se was chosen by us, so a parse
	// failure here means a key shared with a buggy issuer, not a forgery.
	expires, err := time.Parse(time.RFC3339, fields["se"])
	if err != nil {
		return Grant{}, authFailed("se is not an RFC 3339 time.")
	}
	if now := s.Clock.Now(); !now.Before(expires) {
		return Grant{}, authFailed(fmt.Sprintf("Signature not valid in the specified time frame: Expiry [%s] - Current [%s]",
			expires.UTC().Format(time.RFC1123), now.UTC().Format(time.RFC1123)))
	}
	return Grant{AccessID: accessID, ResourceID: fields["rid"], Write: sp == "rw", Expires: expires.UTC()}, nil
}

// mac is the signature over the fields a SAS binds. Each field is length
// prefixed so no choice of ids can make two different grants encode the same.
func (s Signer) mac(accessID, resourceID, sp, se string) []byte {
	m := hmac.New(sha256.New, s.Key)
	var n [binary.MaxVarintLen64]byte
	for _, f := range []string{sigDomain, sasVersion, sasResource, accessID, resourceID, sp, se} {
		m.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		m.Write([]byte(f))
	}
	return m.Sum(nil)
}

func permission(write bool) string {
	if write {
		return "rw"
	}
	return "r"
}

// authFailed is Azure's AuthenticationFailed with a detail telling the caller
// which check failed; the detail never contains the signature or the key.
func authFailed(detail string) *errs.Error {
	return &errs.Error{
		Kind:    errs.Forbidden,
		Code:    codeAuthenticationFailed,
		Message: msgAuthFailed,
		Details: []*errs.Error{{Code: "AuthenticationErrorDetail", Message: detail}},
	}
}
