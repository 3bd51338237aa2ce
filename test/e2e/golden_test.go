package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/rbac"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares an ARM body with testdata/<name>.golden.json. Both sides
// are normalized first (pretty-printed, keys sorted, values that change from
// run to run replaced by placeholders), so a golden file changes only when
// the wire shape does, and that change shows up in review as a diff.
func golden(t *testing.T, name string, body []byte) {
	t.Helper()
	got, err := normalizeJSON(body)
	if err != nil {
		t.Fatalf("golden %s: %v\n%s", name, err, body)
	}
	path := filepath.Join("testdata", name+".golden.json")
	refresh := fmt.Sprintf("go test ./test/e2e -run '^%s$' -update", strings.SplitN(t.Name(), "/", 2)[0])
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden %s: %v\nto create it: %s", name, err, refresh)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs from the golden file (- golden, + got):\n%s\nIf the new shape is intended, refresh with: %s",
			path, lineDiff(string(want), string(got)), refresh)
	}
}

// normalizeJSON pretty-prints a JSON document with sorted keys and stable
// placeholders for volatile values.
func normalizeJSON(body []byte) ([]byte, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	v = newPlaceholders().value(v)
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	// Placeholders are written <like-this>; HTML escaping would hide them.
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

var (
	baseURLPattern = regexp.MustCompile(`https?://[A-Za-z0-9.\-]+:[0-9]+|https?://\[[0-9a-fA-F:]+\]:[0-9]+`)
	guidPattern    = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	// Operation ids that are not GUIDs (DataProtection's are base64).
	operationIDPattern = regexp.MustCompile(`(?i)(/(?:operationStatus|operationResults|operations|operationsStatus|operationStatuses)/)([A-Za-z0-9_+=\-]+)`)
	base64Pattern      = regexp.MustCompile(`^[A-Za-z0-9+/]+={0,2}$`)
	timePattern        = regexp.MustCompile(`[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})?`)
)

// placeholders numbers volatile values by first appearance, in the order
// they are written, so equal values stay equal in the golden file and a
// reader can still see that, say, a principalId reappears in a message.
type placeholders struct {
	seen  map[string]string
	count map[string]int
}

func newPlaceholders() *placeholders {
	return &placeholders{seen: map[string]string{}, count: map[string]int{}}
}

func (p *placeholders) label(kind, value string) string {
	if l, ok := p.seen[value]; ok {
		return l
	}
	p.count[kind]++
	l := fmt.Sprintf("<%s-%d>", kind, p.count[kind])
	p.seen[value] = l
	return l
}

func (p *placeholders) value(v any) any {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		// The encoder writes keys sorted; number in the same order.
		sort.Strings(keys)
		out := make(map[string]any, len(x))
		for _, k := range keys {
			out[p.text(k)] = p.value(x[k])
		}
		return out
	case []any:
		for i := range x {
			x[i] = p.value(x[i])
		}
		return x
	case string:
		return p.text(x)
	}
	return v
}

func (p *placeholders) text(s string) string {
	if isOperationID(s) {
		return p.label("op", s)
	}
	s = baseURLPattern.ReplaceAllString(s, "<base-url>")
	s = operationIDPattern.ReplaceAllStringFunc(s, func(m string) string {
		sub := operationIDPattern.FindStringSubmatch(m)
		if guidPattern.MatchString(sub[2]) {
			return m // numbered below with the other GUIDs
		}
		return sub[1] + p.label("op", sub[2])
	})
	s = guidPattern.ReplaceAllStringFunc(s, func(g string) string {
		// Built-in role ids are the same everywhere and say which role.
		if _, ok := rbac.BuiltInRole(g); ok {
			return g
		}
		return p.label("guid", g)
	})
	return timePattern.ReplaceAllStringFunc(s, func(ts string) string {
		if volatileTime(ts) {
			return "<time>"
		}
		return ts
	})
}

// isOperationID tells a DataProtection operation id standing alone (an
// operation status's name): base64 of text that holds GUIDs.
func isOperationID(s string) bool {
	if len(s) < 24 || !base64Pattern.MatchString(s) {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	return err == nil && guidPattern.Match(raw)
}

// volatileTime tells a time stamped by the run (creation, start, end,
// expiry) from a constant echoed from a request (a policy's schedule start)
// or the zero time Azure writes for an unfinished operation's endTime.
func volatileTime(ts string) bool {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if at, err := time.Parse(layout, ts); err == nil {
			d := time.Since(at)
			return d < 366*24*time.Hour && d > -366*24*time.Hour
		}
	}
	return false
}

// lineDiff shows the lines that differ between two texts, with a little
// context, in the style of a unified diff.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	// Longest common subsequence, by dynamic programming: golden files are
	// small enough that quadratic space is fine.
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			lines = append(lines, line{' ', x[i]})
			i, j = i+1, j+1
		case j < len(y) && (i == len(x) || lcs[i][j+1] >= lcs[i+1][j]):
			lines = append(lines, line{'+', y[j]})
			j++
		default:
			lines = append(lines, line{'-', x[i]})
			i++
		}
	}
	// Print each change with up to three unchanged lines either side.
	const context = 3
	show := make([]bool, len(lines))
	for k, l := range lines {
		if l.op != ' ' {
			for c := max(k-context, 0); c <= min(k+context, len(lines)-1); c++ {
				show[c] = true
			}
		}
	}
	var out strings.Builder
	for k, l := range lines {
		if !show[k] {
			continue
		}
		if k > 0 && !show[k-1] && out.Len() > 0 {
			out.WriteString("@@\n")
		}
		fmt.Fprintf(&out, "%c%s\n", l.op, l.text)
	}
	return out.String()
}

// transcript records the exchanges of a test for one golden file. The
// polls of one status monitor collapse to the last answer: how many
// "in progress" answers come before it depends on timing, not on the wire.
type transcript struct {
	exchanges []exchange
	pollRun   int // nonzero while requests are polls of one monitor
	runs      int
}

type exchange struct {
	Request string            `json:"request"`
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    json.RawMessage   `json:"body,omitempty"`
	pollRun int
}

// recordedHeaders are the response headers whose shape is part of the
// contract: where to poll and how long to wait.
var recordedHeaders = []string{"Azure-AsyncOperation", "Location", "Retry-After"}

func (tr *transcript) add(method, url string, code int, h http.Header, body string) {
	e := exchange{Request: method + " " + url, Status: code, pollRun: tr.pollRun}
	for _, k := range recordedHeaders {
		if v := h.Get(k); v != "" {
			if e.Headers == nil {
				e.Headers = map[string]string{}
			}
			e.Headers[k] = v
		}
	}
	switch {
	case body == "":
	case json.Valid([]byte(body)):
		e.Body = json.RawMessage(body)
	default:
		e.Body, _ = json.Marshal(body)
	}
	if n := len(tr.exchanges); n > 0 && e.pollRun != 0 && tr.exchanges[n-1].pollRun == e.pollRun {
		tr.exchanges[n-1] = e
		return
	}
	tr.exchanges = append(tr.exchanges, e)
}

// polling marks the requests sent until the returned function is called as
// polls of one monitor.
func (tr *transcript) polling() func() {
	if tr == nil {
		return func() {}
	}
	tr.runs++
	tr.pollRun = tr.runs
	return func() { tr.pollRun = 0 }
}

func (tr *transcript) JSON(t *testing.T) []byte {
	t.Helper()
	raw, err := json.Marshal(tr.exchanges)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestNormalizeJSON pins what the golden files rely on: equal volatile
// values share a placeholder, constants echoed from requests survive.
func TestNormalizeJSON(t *testing.T) {
	now := time.Now().UTC()
	op := base64.StdEncoding.EncodeToString([]byte("2d598363-ae03-4c09-a365-a051cd165e86;1ac4d205-1cc1-4555-b13d-c07ec10e011d"))
	in := `{"z":"https://127.0.0.1:4431/subscriptions/B879AB85-46b2-4b15-a5f4-1ebaef45ad3f/x/operationStatus/` + op + `?api-version=1",
		"a":{"sub":"b879ab85-46b2-4b15-a5f4-1ebaef45ad3f","same":"B879AB85-46b2-4b15-a5f4-1ebaef45ad3f","name":"` + op + `"},
		"role":"/providers/Microsoft.Authorization/roleDefinitions/` + diskBackupReaderRole + `",
		"start":"` + now.Format(time.RFC3339Nano) + `","end":"0001-01-01T00:00:00","schedule":"R/2021-05-20T22:00:00+00:00/PT4H",
		"n":1.50}`
	got, err := normalizeJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "a": {
    "name": "<op-1>",
    "same": "<guid-1>",
    "sub": "<guid-2>"
  },
  "end": "0001-01-01T00:00:00",
  "n": 1.50,
  "role": "/providers/Microsoft.Authorization/roleDefinitions/` + diskBackupReaderRole + `",
  "schedule": "R/2021-05-20T22:00:00+00:00/PT4H",
  "start": "<time>",
  "z": "<base-url>/subscriptions/<guid-1>/x/operationStatus/<op-1>?api-version=1"
}
`
	if string(got) != want {
		t.Fatalf("normalized:\n%s", lineDiff(want, string(got)))
	}
}
