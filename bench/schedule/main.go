// Command schedule drives a running `coffer serve` for bench/schedule/run:
// it protects N small disks under one hourly disk policy whose first slot
// comes a few minutes after setup, then measures what a user of the
// service sees at that slot: how long after the slot each backup fired and
// took its snapshot, how fast the backups went, and how much slower the
// control plane's GETs got meanwhile than on the same server idle. It
// speaks only the ARM REST API, with the admin token it is given.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// api-versions of the three providers the benchmark calls.
const (
	rgAPI   = "?api-version=2021-04-01"
	diskAPI = "?api-version=2025-01-02"
	dpAPI   = "?api-version=2025-07-01"
	authAPI = "?api-version=2022-04-01"
)

// Built-in roles the vault identity needs (internal/rbac/builtin.go).
const (
	diskBackupReader        = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	diskSnapshotContributor = "7efff54f-a5b4-42b5-a1c5-5411624893ce"
)

func main() {
	var c config
	flag.StringVar(&c.endpoint, "endpoint", "", "coffer's ARM endpoint, https://host:port")
	flag.StringVar(&c.token, "token", os.Getenv("COFFER_TOKEN"), "bearer token of an administrator (default $COFFER_TOKEN)")
	flag.StringVar(&c.cacert, "cacert", "", "PEM certificate to trust")
	flag.IntVar(&c.n, "n", 5000, "protected disks")
	flag.IntVar(&c.setupConc, "setup-concurrency", 16, "requests in flight during setup")
	flag.IntVar(&c.getConc, "get-concurrency", 4, "GET load: requests in flight")
	flag.DurationVar(&c.idle, "idle", 20*time.Second, "idle baseline of the GET load before the slot")
	flag.DurationVar(&c.margin, "margin", 30*time.Second, "slack added to the estimated setup time before the slot")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Minute, "give up waiting for the backups this long after the slot")
	flag.Parse()
	if c.endpoint == "" || c.token == "" || c.cacert == "" || c.n < 1 {
		fmt.Fprintln(os.Stderr, "usage: schedule -endpoint URL -token TOKEN -cacert PEM [-n N]")
		os.Exit(2)
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "schedule:", err)
		os.Exit(1)
	}
}

type config struct {
	endpoint, token, cacert string
	n, setupConc, getConc   int
	idle, margin, timeout   time.Duration
}

// client sends ARM requests over one HTTP/2 connection, as the SDKs do.
type client struct {
	base  string
	token string
	http  *http.Client
}

func newClient(c config) (*client, error) {
	pem, err := os.ReadFile(c.cacert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no certificate", c.cacert)
	}
	return &client{base: strings.TrimRight(c.endpoint, "/"), token: c.token, http: &http.Client{Timeout: 2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64}}}, nil
}

// do sends one request; path is relative to the endpoint unless it is a
// whole URL (a monitor header). 429 and 503 are retried as Retry-After says.
func (c *client) do(ctx context.Context, method, path string, body any) (int, http.Header, []byte, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return 0, nil, nil, err
		}
	}
	u := path
	if !strings.HasPrefix(u, "https://") {
		u = c.base + path
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(raw))
		if err != nil {
			return 0, nil, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return 0, nil, nil, err
		}
		if (resp.StatusCode == 429 || resp.StatusCode == 503) && attempt < 5 {
			wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(wait, 1)) * time.Second)
			continue
		}
		return resp.StatusCode, resp.Header, b, nil
	}
}

// must sends a request and wants one of the statuses.
func (c *client) must(ctx context.Context, method, path string, body any, want ...int) (http.Header, []byte, error) {
	code, h, b, err := c.do(ctx, method, path, body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if !slices.Contains(want, code) {
		return nil, nil, fmt.Errorf("%s %s: %d, want %v: %s", method, path, code, want, b)
	}
	return h, b, nil
}

// waitStatus polls a DataProtection status monitor until it leaves
// InProgress and returns an error unless it Succeeded.
func (c *client) waitStatus(ctx context.Context, monitor string) error {
	for {
		_, b, err := c.must(ctx, "GET", monitor, nil, 200)
		if err != nil {
			return err
		}
		var st struct {
			Status string          `json:"status"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(b, &st); err != nil {
			return err
		}
		switch strings.ToLower(st.Status) {
		case "inprogress":
			time.Sleep(200 * time.Millisecond)
		case "succeeded":
			return nil
		default:
			return fmt.Errorf("operation %s: %s", st.Status, st.Error)
		}
	}
}

// waitDisk polls a disk until it is provisioned.
func (c *client) waitDisk(ctx context.Context, id string) error {
	for {
		_, b, err := c.must(ctx, "GET", id+diskAPI, nil, 200)
		if err != nil {
			return err
		}
		var d struct {
			Properties struct {
				ProvisioningState string `json:"provisioningState"`
			} `json:"properties"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			return err
		}
		switch d.Properties.ProvisioningState {
		case "Succeeded":
			return nil
		case "Failed":
			return fmt.Errorf("disk %s failed to provision: %s", id, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// parallel runs fn(i) for i in [0, n) on conc goroutines and returns the
// first error; progress is printed every 10%.
func parallel(ctx context.Context, what string, n, conc int, fn func(ctx context.Context, i int) error) (time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	var next, done atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				if d := done.Add(1); d%int64(max(n/10, 1)) == 0 || d == int64(n) {
					el := time.Since(start)
					logf("%s: %d/%d in %s (%.1f/s)", what, d, n, el.Round(time.Second), float64(d)/el.Seconds())
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), first
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// setup is what the benchmark created.
type setup struct {
	sub, diskGroup, snapGroup, vault string
	slot                             time.Time
	configured                       []time.Time // when each instance's configure was seen to succeed
	diskRate, instanceRate           float64     // per second, at setup
}

func (s *setup) diskID(i int) string {
	return s.diskGroup + "/providers/Microsoft.Compute/disks/" + fmt.Sprintf("disk-%05d", i)
}

func (s *setup) instanceID(i int) string {
	return s.vault + "/backupInstances/" + fmt.Sprintf("disk-%05d-bi", i)
}

func policyBody(start time.Time) map[string]any {
	ds := map[string]any{"dataStoreType": "OperationalStore", "objectType": "DataStoreInfoBase"}
	return map[string]any{"properties": map[string]any{
		"datasourceTypes": []string{"Microsoft.Compute/disks"}, "objectType": "BackupPolicy",
		"policyRules": []any{
			map[string]any{"name": "BackupHourly", "objectType": "AzureBackupRule", "dataStore": ds,
				"backupParameters": map[string]any{"backupType": "Incremental", "objectType": "AzureBackupParams"},
				"trigger": map[string]any{"objectType": "ScheduleBasedTriggerContext",
					"schedule":        map[string]any{"repeatingTimeIntervals": []string{"R/" + start.UTC().Format(time.RFC3339) + "/PT1H"}, "timeZone": "UTC"},
					"taggingCriteria": []any{map[string]any{"isDefault": true, "taggingPriority": 99, "tagInfo": map[string]any{"tagName": "Default"}}}}},
			map[string]any{"name": "Default", "objectType": "AzureRetentionRule", "isDefault": true,
				"lifecycles": []any{map[string]any{"deleteAfter": map[string]any{"duration": "P7D", "objectType": "AbsoluteDeleteOption"},
					"sourceDataStore": ds}}},
		}}}
}

func (s *setup) instanceBody(i int, policy string) map[string]any {
	return map[string]any{"properties": map[string]any{
		"objectType": "BackupInstance",
		"dataSourceInfo": map[string]any{"datasourceType": "Microsoft.Compute/disks", "objectType": "Datasource",
			"resourceID": s.diskID(i), "resourceLocation": "westus", "resourceName": fmt.Sprintf("disk-%05d", i),
			"resourceType": "Microsoft.Compute/disks", "resourceUri": ""},
		"policyInfo": map[string]any{"policyId": s.vault + "/backupPolicies/" + policy,
			"policyParameters": map[string]any{"dataStoreParametersList": []any{map[string]any{
				"dataStoreType": "OperationalStore", "objectType": "AzureOperationalStoreParameters", "resourceGroupId": s.snapGroup}}}},
	}}
}

// protect PUTs instance i under policy and waits for its configure to end.
func (c *client) protect(ctx context.Context, s *setup, i int, policy string) error {
	h, _, err := c.must(ctx, "PUT", s.instanceID(i)+dpAPI, s.instanceBody(i, policy), 200, 201)
	if err != nil {
		return err
	}
	if err := c.waitStatus(ctx, h.Get("Azure-AsyncOperation")); err != nil {
		return fmt.Errorf("protect disk %d: %w", i, err)
	}
	s.configured[i] = time.Now()
	return nil
}

// create builds the resources. The slot must come after the last instance
// is configured (an instance configured after it waits for the next hour),
// and the policy cannot change once in use; so a probe of the first
// instances is protected under a far-off policy to measure the rate, the
// hourly policy's start is set from it, and the probe is moved over last.
func create(ctx context.Context, c *client, cfg config) (*setup, error) {
	s := &setup{sub: uuid.NewString()}
	subPath := "/subscriptions/" + s.sub
	s.diskGroup, s.snapGroup = subPath+"/resourceGroups/bench-disks", subPath+"/resourceGroups/bench-snapshots"
	s.vault = subPath + "/resourceGroups/bench-vault/providers/Microsoft.DataProtection/backupVaults/bench-vault"
	s.configured = make([]time.Time, cfg.n)
	for _, g := range []string{"bench-disks", "bench-snapshots", "bench-vault"} {
		if _, _, err := c.must(ctx, "PUT", subPath+"/resourceGroups/"+g+rgAPI, map[string]any{"location": "westus"}, 200, 201); err != nil {
			return nil, err
		}
	}
	logf("creating %d disks (1 GiB, Empty), %d in flight", cfg.n, cfg.setupConc)
	took, err := parallel(ctx, "disks", cfg.n, cfg.setupConc, func(ctx context.Context, i int) error {
		id := s.diskID(i)
		if _, _, err := c.must(ctx, "PUT", id+diskAPI, map[string]any{"location": "westus", "sku": map[string]any{"name": "Standard_LRS"},
			"properties": map[string]any{"creationData": map[string]any{"createOption": "Empty"}, "diskSizeGB": 1}}, 200, 202); err != nil {
			return err
		}
		return c.waitDisk(ctx, id)
	})
	if err != nil {
		return nil, err
	}
	s.diskRate = float64(cfg.n) / took.Seconds()

	h, _, err := c.must(ctx, "PUT", s.vault+dpAPI, map[string]any{"location": "westus", "identity": map[string]any{"type": "SystemAssigned"},
		"properties": map[string]any{"storageSettings": []any{map[string]any{"datastoreType": "VaultStore", "type": "LocallyRedundant"}}}}, 200, 201)
	if err != nil {
		return nil, err
	}
	if err := c.waitStatus(ctx, h.Get("Azure-AsyncOperation")); err != nil {
		return nil, err
	}
	_, b, err := c.must(ctx, "GET", s.vault+dpAPI, nil, 200)
	if err != nil {
		return nil, err
	}
	var v struct {
		Identity struct {
			PrincipalID string `json:"principalId"`
		} `json:"identity"`
	}
	if err := json.Unmarshal(b, &v); err != nil || v.Identity.PrincipalID == "" {
		return nil, fmt.Errorf("vault has no identity: %s", b)
	}
	for role, scope := range map[string]string{diskBackupReader: s.diskGroup, diskSnapshotContributor: s.snapGroup} {
		if _, _, err := c.must(ctx, "PUT", scope+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString()+authAPI,
			map[string]any{"properties": map[string]any{"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/" + role,
				"principalId": v.Identity.PrincipalID, "principalType": "ServicePrincipal"}}, 201); err != nil {
			return nil, err
		}
	}

	// The probe: a policy a day off, never due during the run.
	if _, _, err := c.must(ctx, "PUT", s.vault+"/backupPolicies/probe"+dpAPI, policyBody(time.Now().Add(24*time.Hour).Truncate(time.Second)), 200, 201); err != nil {
		return nil, err
	}
	probe := min(cfg.n, max(cfg.n/20, min(50, cfg.n)))
	logf("probe: protecting %d disks under a far-off policy to time protection", probe)
	took, err = parallel(ctx, "probe", probe, cfg.setupConc, func(ctx context.Context, i int) error { return c.protect(ctx, s, i, "probe") })
	if err != nil {
		return nil, err
	}
	rate := float64(probe) / took.Seconds()
	// All N are protected under the hourly policy: the rest, then the probe again.
	need := time.Duration(float64(cfg.n) / rate * 1.25 * float64(time.Second))
	s.slot = time.Now().Add(need + cfg.margin + cfg.idle).Add(time.Second).Truncate(time.Second)
	logf("probe: %.1f instances/s; first slot of the hourly policy at %s (in %s)", rate, s.slot.Format(time.TimeOnly), time.Until(s.slot).Round(time.Second))
	if _, _, err := c.must(ctx, "PUT", s.vault+"/backupPolicies/hourly"+dpAPI, policyBody(s.slot), 200, 201); err != nil {
		return nil, err
	}
	start := time.Now()
	order := make([]int, 0, cfg.n)
	for i := probe; i < cfg.n; i++ {
		order = append(order, i)
	}
	for i := range probe {
		order = append(order, i)
	}
	took, err = parallel(ctx, "instances", cfg.n, cfg.setupConc, func(ctx context.Context, k int) error { return c.protect(ctx, s, order[k], "hourly") })
	if err != nil {
		return nil, err
	}
	s.instanceRate = float64(cfg.n) / took.Seconds()
	logf("protected %d disks in %s (%.1f/s); slot in %s", cfg.n, time.Since(start).Round(time.Second), s.instanceRate, time.Until(s.slot).Round(time.Second))
	return s, nil
}

// sample is one GET of the load.
type sample struct {
	at   time.Time
	kind int
	took time.Duration
	ok   bool
}

var kinds = []string{"GET disk", "GET backup instance", "list backup instances"}

// load sends the fixed GET mix on conc goroutines until ctx ends.
func load(ctx context.Context, c *client, s *setup, n, conc int) []sample {
	var mu sync.Mutex
	var all []sample
	var wg sync.WaitGroup
	for w := range conc {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			var mine []sample
			for k := w; ctx.Err() == nil; k++ {
				kind := k % len(kinds)
				path := []string{s.diskID(r.IntN(n)) + diskAPI, s.instanceID(r.IntN(n)) + dpAPI, s.vault + "/backupInstances" + dpAPI}[kind]
				at := time.Now()
				code, _, _, err := c.do(context.WithoutCancel(ctx), "GET", path, nil)
				mine = append(mine, sample{at: at, kind: kind, took: time.Since(at), ok: err == nil && code == 200})
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return all
}

// job is the part of a backup job the benchmark reads.
type job struct {
	Name       string `json:"name"`
	Properties struct {
		Status       string     `json:"status"`
		StartTime    time.Time  `json:"startTime"`
		EndTime      *time.Time `json:"endTime"`
		ErrorDetails []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errorDetails"`
		ExtendedInfo struct {
			AdditionalDetails  map[string]string `json:"additionalDetails"`
			SourceRecoverPoint *struct {
				RecoveryPointTime *time.Time `json:"recoveryPointTime"`
			} `json:"sourceRecoverPoint"`
		} `json:"extendedInfo"`
	} `json:"properties"`
}

// jobs reads every job of the vault, page by page, and how long that took.
func (c *client) jobs(ctx context.Context, vault string) ([]job, time.Duration, error) {
	start := time.Now()
	var out []job
	next := vault + "/backupJobs" + dpAPI + "&$top=1000"
	for next != "" {
		_, b, err := c.must(ctx, "GET", next, nil, 200)
		if err != nil {
			return nil, 0, err
		}
		var page struct {
			Value    []job  `json:"value"`
			NextLink string `json:"nextLink"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, 0, err
		}
		out = append(out, page.Value...)
		next = page.NextLink
	}
	return out, time.Since(start), nil
}

// ofSlot keeps the scheduled jobs of the slot.
func ofSlot(all []job, slot time.Time) []job {
	var out []job
	for _, j := range all {
		if t, err := time.Parse(time.RFC3339, j.Properties.ExtendedInfo.AdditionalDetails["ScheduledTime"]); err == nil && t.Equal(slot) {
			out = append(out, j)
		}
	}
	return out
}

func ended(js []job) int {
	n := 0
	for _, j := range js {
		if j.Properties.Status != "InProgress" {
			n++
		}
	}
	return n
}

func run(ctx context.Context, cfg config) error {
	c, err := newClient(cfg)
	if err != nil {
		return err
	}
	s, err := create(ctx, c, cfg)
	if err != nil {
		return err
	}
	expected := 0
	for _, t := range s.configured {
		if t.Before(s.slot) {
			expected++
		}
	}
	if expected < cfg.n {
		logf("%d instances were configured after the slot and will not back up in it", cfg.n-expected)
	}
	// The idle baseline: the GET load for cfg.idle, ending 5 s before the slot.
	guard := 5 * time.Second
	if wait := time.Until(s.slot.Add(-guard - cfg.idle)); wait > 0 {
		logf("waiting %s for the idle baseline", wait.Round(time.Second))
		time.Sleep(wait)
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadStart := time.Now()
	samples := make(chan []sample, 1)
	go func() { samples <- load(loadCtx, c, s, cfg.n, cfg.getConc) }()
	logf("GET load on, %d in flight; slot at %s", cfg.getConc, s.slot.Format(time.TimeOnly))
	time.Sleep(time.Until(s.slot.Add(5 * time.Second)))

	var listTimes []time.Duration
	var last []job
	deadline := s.slot.Add(cfg.timeout)
	for {
		all, took, err := c.jobs(ctx, s.vault)
		if err != nil {
			stopLoad()
			<-samples
			return err
		}
		listTimes = append(listTimes, took)
		last = ofSlot(all, s.slot)
		done := ended(last)
		logf("jobs of the slot: %d scheduled, %d ended of %d (listing %d jobs took %s)", len(last), done, expected, len(all), took.Round(time.Millisecond))
		if len(last) >= expected && done == len(last) || time.Now().After(deadline) {
			break
		}
		// Listing every job is itself load (one read a job): keep it to
		// a tenth of the time.
		time.Sleep(max(5*time.Second, 10*took))
	}
	// A second idle baseline, after the backups: one on a shared machine
	// can be caught by a neighbour's stall.
	afterStart := time.Now()
	logf("backups over; GET load on the idle server again for %s", cfg.idle)
	time.Sleep(cfg.idle)
	stopLoad()
	got := <-samples
	idle := []window{{loadStart, s.slot.Add(-guard)}, {afterStart, time.Now()}}
	report(cfg, s, expected, idle, got, last, listTimes)
	return nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

// window is a span of the GET load, [from, to).
type window struct{ from, to time.Time }

func report(cfg config, s *setup, expected int, idle []window, samples []sample, js []job, listTimes []time.Duration) {
	var completed, failed, running int
	var fireLag, pointLag []time.Duration
	var lastEnd time.Time
	codes := map[string]int{}
	for _, j := range js {
		p := j.Properties
		fireLag = append(fireLag, p.StartTime.Sub(s.slot))
		switch p.Status {
		case "Completed":
			completed++
			if rp := p.ExtendedInfo.SourceRecoverPoint; rp != nil && rp.RecoveryPointTime != nil {
				pointLag = append(pointLag, rp.RecoveryPointTime.Sub(s.slot))
			}
		case "Failed":
			failed++
			for _, e := range p.ErrorDetails {
				codes[e.Code]++
			}
		default:
			running++
		}
		if p.EndTime != nil && p.EndTime.After(lastEnd) {
			lastEnd = *p.EndTime
		}
	}
	span := lastEnd.Sub(s.slot)
	busy := []window{{s.slot, lastEnd}}
	type stat struct {
		n, errs int
		p50     time.Duration
		p99     time.Duration
	}
	stats := func(in []window, kind int) stat {
		var ds []time.Duration
		st := stat{}
		for _, x := range samples {
			if !slices.ContainsFunc(in, func(w window) bool { return !x.at.Before(w.from) && x.at.Before(w.to) }) || kind >= 0 && x.kind != kind {
				continue
			}
			if !x.ok {
				st.errs++
			}
			ds = append(ds, x.took)
		}
		st.n = len(ds)
		st.p50, st.p99 = pct(ds, 0.50), pct(ds, 0.99)
		return st
	}
	ratio := func(a, b time.Duration) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", float64(a)/float64(b))
	}
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		return "MISSED"
	}

	fmt.Printf("\ncoffer scheduled backups: %d protected 1 GiB empty disks, one vault, policy R/%s/PT1H (UTC)\n",
		cfg.n, s.slot.UTC().Format(time.RFC3339))
	fmt.Printf("setup: %.1f disks/s, %.1f protected instances/s (%d in flight)\n\n", s.diskRate, s.instanceRate, cfg.setupConc)
	fmt.Printf("%-46s %12s\n", "backups of the slot", "")
	fmt.Printf("%-46s %12d\n", "expected (configured before the slot)", expected)
	fmt.Printf("%-46s %12d\n", "jobs fired", len(js))
	fmt.Printf("%-46s %12d\n", "completed", completed)
	fmt.Printf("%-46s %12d\n", "failed", failed)
	fmt.Printf("%-46s %12d\n", "still in progress at the end", running)
	fmt.Printf("%-46s %12s\n", "job start - slot: p50", secs(pct(fireLag, .5)))
	fmt.Printf("%-46s %12s\n", "job start - slot: p99", secs(pct(fireLag, .99)))
	fmt.Printf("%-46s %12s\n", "job start - slot: max", secs(pct(fireLag, 1)))
	fmt.Printf("%-46s %12s\n", "snapshot (recovery point) - slot: p50", secs(pct(pointLag, .5)))
	fmt.Printf("%-46s %12s\n", "snapshot (recovery point) - slot: p99", secs(pct(pointLag, .99)))
	fmt.Printf("%-46s %12s\n", "snapshot (recovery point) - slot: max", secs(pct(pointLag, 1)))
	fmt.Printf("%-46s %12s\n", "slot until the last job ended", secs(span))
	if span > 0 {
		fmt.Printf("%-46s %12.1f\n", "backups per second (completed / that)", float64(completed)/span.Seconds())
	}
	for code, n := range codes {
		fmt.Printf("  failed with %s: %d\n", code, n)
	}
	fmt.Println()
	fmt.Printf("GET latency, %d in flight (idle: %s before the slot and %s after the last job; load: the %s from the slot to the last job's end)\n",
		cfg.getConc, secs(idle[0].to.Sub(idle[0].from)), secs(idle[1].to.Sub(idle[1].from)), secs(span))
	fmt.Printf("%-24s %7s %9s %9s %7s %9s %9s %6s %9s %9s\n", "", "idle n", "p50", "p99", "load n", "p50", "p99", "errors", "p50 x", "p99 x")
	for k := -1; k < len(kinds); k++ {
		name := "all"
		if k >= 0 {
			name = kinds[k]
		}
		i, l := stats(idle, k), stats(busy, k)
		fmt.Printf("%-24s %7d %9s %9s %7d %9s %9s %6d %9s %9s\n", name, i.n, ms(i.p50), ms(i.p99), l.n, ms(l.p50), ms(l.p99), i.errs+l.errs,
			ratio(l.p50, i.p50), ratio(l.p99, i.p99))
	}
	fmt.Printf("listing every job (%d polls): p50 %s, max %s\n\n", len(listTimes), ms(pct(listTimes, .5)), ms(pct(listTimes, 1)))

	before, after := stats(idle[:1], -1), stats(idle[1:], -1)
	fmt.Printf("idle p50/p99: before the slot %s / %s, after the backups %s / %s\n\n", ms(before.p50), ms(before.p99), ms(after.p50), ms(after.p99))
	all, in := stats(idle, -1), stats(busy, -1)
	fmt.Printf("%-52s %10s %8s %s\n", "figure", "value", "goal", "verdict")
	maxPoint := pct(pointLag, 1)
	fmt.Printf("%-52s %10s %8s %s\n", "every backup within 60 s of its slot (snapshot time)", secs(maxPoint), "<= 60 s",
		verdict(completed == expected && len(pointLag) == completed && maxPoint <= time.Minute))
	fmt.Printf("%-52s %10s %8s %s\n", "every job started within 60 s of its slot", secs(pct(fireLag, 1)), "<= 60 s",
		verdict(len(js) == expected && pct(fireLag, 1) <= time.Minute))
	fmt.Printf("%-52s %10d %8s %s\n", "failed backups", failed+running+expected-len(js), "0", verdict(failed+running == 0 && len(js) == expected))
	fmt.Printf("%-52s %10s %8s %s\n", "GET p99 under backups / idle", ratio(in.p99, all.p99), "", "")
	fmt.Printf("%-52s %10s %8s %s\n", "GET p50 under backups / idle", ratio(in.p50, all.p50), "", "")
}
