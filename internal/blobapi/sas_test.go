package blobapi

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
)

func TestSignerRoundTrip(t *testing.T) {
	clk := clock.NewFake(testStart)
	s := Signer{Key: []byte(strings.Repeat("k", MinKeyLen)), Clock: clk}
	for _, g := range []Grant{
		{AccessID: "0123456789abcdef0123456789abcdef", ResourceID: testResource, Write: true, Expires: testStart.Add(time.Hour)},
		{AccessID: "a", ResourceID: "", Write: false, Expires: testStart.Add(time.Second)},
		{AccessID: "b", ResourceID: "id with spaces & ?=/", Expires: testStart.Add(90 * time.Minute)},
	} {
		raw := s.URL("https://coffer.example/data/", g)
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if want := "/data/sas/" + g.AccessID + "/abcd"; u.Path != want {
			t.Errorf("path = %q, want %q", u.Path, want)
		}
		if !regexp.MustCompile(`^sv=2018-03-28&sr=b&sp=rw?&se=[^&]+(&rid=[^&]+)?&sig=[A-Za-z0-9_-]{43}$`).MatchString(u.RawQuery) {
			t.Errorf("query %q is not the SAS shape", u.RawQuery)
		}
		got, err := s.Verify(g.AccessID, u.Query())
		if err != nil {
			t.Fatalf("Verify(%s): %v", raw, err)
		}
		if got != g {
			t.Errorf("Verify = %+v, want %+v", got, g)
		}
	}
}

func TestSignerRefuses(t *testing.T) {
	key := []byte(strings.Repeat("k", MinKeyLen))
	g := Grant{AccessID: "0123456789abcdef0123456789abcdef", ResourceID: testResource, Expires: testStart.Add(time.Hour)}
	for _, tc := range []struct {
		name     string
		signer   func(clk clock.Clock) Signer
		accessID string
		edit     func(q url.Values)
		advance  time.Duration
		kind     errs.Kind
	}{
		{name: "sp widened", edit: func(q url.Values) { q.Set("sp", "rw") }, kind: errs.Forbidden},
		{name: "sp unknown", edit: func(q url.Values) { q.Set("sp", "racwd") }, kind: errs.Forbidden},
		{name: "se extended", edit: func(q url.Values) { q.Set("se", "2099-01-01T00:00:00Z") }, kind: errs.Forbidden},
		{name: "rid changed", edit: func(q url.Values) { q.Set("rid", otherDisk) }, kind: errs.Forbidden},
		{name: "rid dropped", edit: func(q url.Values) { q.Del("rid") }, kind: errs.Forbidden},
		{name: "sv changed", edit: func(q url.Values) { q.Set("sv", "2020-02-10") }, kind: errs.Forbidden},
		{name: "sr changed", edit: func(q url.Values) { q.Set("sr", "c") }, kind: errs.Forbidden},
		{name: "sig missing", edit: func(q url.Values) { q.Del("sig") }, kind: errs.Forbidden},
		{name: "sig not base64", edit: func(q url.Values) { q.Set("sig", "!!!") }, kind: errs.Forbidden},
		{name: "sig truncated", edit: func(q url.Values) { q.Set("sig", q.Get("sig")[:20]) }, kind: errs.Forbidden},
		{name: "sig twice", edit: func(q url.Values) { q.Add("sig", q.Get("sig")) }, kind: errs.Forbidden},
		{name: "other access id", accessID: "ffffffffffffffffffffffffffffffff", kind: errs.Forbidden},
		{name: "empty access id", accessID: "-", kind: errs.Forbidden},
		{name: "other key", signer: func(clk clock.Clock) Signer {
			return Signer{Key: []byte(strings.Repeat("x", MinKeyLen)), Clock: clk}
		}, kind: errs.Forbidden},
		{name: "at expiry", advance: time.Hour, kind: errs.Forbidden},
		{name: "after expiry", advance: 48 * time.Hour, kind: errs.Forbidden},
		{name: "short key", signer: func(clk clock.Clock) Signer { return Signer{Key: key[:MinKeyLen-1], Clock: clk} }, kind: errs.Internal},
		{name: "no clock", signer: func(clock.Clock) Signer { return Signer{Key: key} }, kind: errs.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := clock.NewFake(testStart)
			issuer := Signer{Key: key, Clock: clk}
			u, err := url.Parse(issuer.URL("https://h", g))
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			if tc.edit != nil {
				tc.edit(q)
			}
			verifier := issuer
			if tc.signer != nil {
				verifier = tc.signer(clk)
			}
			id := g.AccessID
			switch tc.accessID {
			case "":
			case "-":
				id = ""
			default:
				id = tc.accessID
			}
			clk.Advance(tc.advance)
			_, err = verifier.Verify(id, q)
			if err == nil {
				t.Fatal("Verify accepted")
			}
			if k := errs.KindOf(err); k != tc.kind {
				t.Errorf("kind = %v, want %v (%v)", k, tc.kind, err)
			}
			if tc.kind == errs.Forbidden {
				if status, code, _, _ := wire(err); status != 403 || code != "AuthenticationFailed" {
					t.Errorf("wire = %d %s", status, code)
				}
			}
		})
	}
}

func TestNewAccessID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id, err := NewAccessID()
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func TestPageRanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     []Range
		lo, hi int64
		want   []Range
	}{
		{"empty", nil, 0, 8192, []Range{}},
		{"sorted and merged", []Range{{4096, 4096}, {0, 4096}, {1024, 512}}, 0, 16384, []Range{{0, 8192}}},
		{"gaps kept", []Range{{0, 512}, {1024, 512}}, 0, 4096, []Range{{0, 512}, {1024, 512}}},
		{"rounded out to pages", []Range{{100, 10}, {1500, 600}}, 0, 4096, []Range{{0, 512}, {1024, 1536}}},
		{"clipped to the window", []Range{{0, 8192}}, 1024, 2048, []Range{{1024, 1024}}},
		{"clipped to an unaligned size", []Range{{0, 8192}}, 0, 1000, []Range{{0, 1000}}},
		{"nonsense skipped", []Range{{-512, 1024}, {0, 0}, {512, -1}, {9000, 10}}, 0, 4096, []Range{{0, 512}}},
		{"huge length", []Range{{512, 1<<63 - 1}}, 0, 4096, []Range{{512, 3584}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pageRanges(tc.in, tc.lo, tc.hi); !slices.Equal(got, tc.want) {
				t.Errorf("pageRanges(%v, %d, %d) = %v, want %v", tc.in, tc.lo, tc.hi, got, tc.want)
			}
		})
	}
}

func TestParseRange(t *testing.T) {
	for _, tc := range []struct {
		in         string
		start, end int64
		ok         bool
	}{
		{"bytes=0-511", 0, 511, true},
		{"bytes=512-", 512, -1, true},
		{" bytes=5-5 ", 5, 5, true},
		{"bytes=-5", 0, 0, false},
		{"bytes=6-5", 0, 0, false},
		{"bytes=+1-5", 0, 0, false},
		{"bytes=0-1,2-3", 0, 0, false},
		{"bytes=99999999999999999999-", 0, 0, false},
		{"items=0-1", 0, 0, false},
		{"bytes=", 0, 0, false},
	} {
		start, end, ok := parseRange(tc.in)
		if ok != tc.ok || ok && (start != tc.start || end != tc.end) {
			t.Errorf("parseRange(%q) = %d, %d, %v; want %d, %d, %v", tc.in, start, end, ok, tc.start, tc.end, tc.ok)
		}
	}
}
