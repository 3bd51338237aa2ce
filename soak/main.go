package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"
)

const (
	computeAPI = "?api-version=2025-01-02"
	dpAPI      = "?api-version=2026-06-01"
	diskSize   = 1 << 30

	diskBackupReader    = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	diskSnapshotContrib = "7efff54f-a5b4-42b5-a1c5-5411624893ce"
	diskRestoreOperator = "b50d9833-a0cb-478e-945f-707fcc997c13"

	// adHocBudget stays under the service's ten ad hoc backups a day per
	// instance; the soak protects a fresh disk when an instance has used it.
	adHocBudget = 9
	// restoreBudget stays under the ten restores a day per instance.
	restoreBudget = 9
	// settleBound is how long in-flight work may take to finish after a
	// restart before it counts as stuck.
	settleBound = 180 * time.Second
)

var scenarios = []string{"nbd-write", "snapshot", "gc", "backup", "restore"}

// protected is a disk the soak writes through NBD, protected by a backup
// instance.
type protected struct {
	name, id, uri, instance string
	adHoc, restores         int
	img                     image
	pending                 map[int64][]byte // unacknowledged writes cut by a kill: either may be there
	ballast                 uint64           // seed of the ballast region's acknowledged content
}

// snapRec is a snapshot the soak knows the image of.
type snapRec struct {
	id       string
	source   *protected
	want     image
	ballast  uint64
	acked    bool // its operation was seen Succeeded (or its job Completed)
	deleted  bool // its DELETE was acknowledged
	verified bool
	trial    int
}

// backupTrigger is an ad hoc backup request the service accepted.
type backupTrigger struct {
	disk    *protected
	want    image
	ballast uint64
	trial   int
}

type pointRec struct {
	name, instance, snapshot string
	want                     image
	ballast                  uint64
	source                   *protected
}

type restoreRec struct {
	target   string
	point    *pointRec
	status   string // "" until its job ends
	deleted  bool
	verified bool
	trial    int
}

type result struct {
	trial                 int
	scenario              string
	delay                 time.Duration
	acked, survived       int
	lost, half            int
	restartFailed         int
	outcome               string
	notes                 []string
	verifyOK, verifyRan   bool
	gcPassesBeforeTheKill int
	elapsed               time.Duration
}

func (r *result) problem(lost bool, format string, args ...any) {
	if lost {
		r.lost++
	} else {
		r.half++
	}
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

type soak struct {
	srv      *server
	rng      *rand.Rand
	maxDelay time.Duration
	sub      string
	vault    string
	policy   string
	snaps    string // the backup instances' snapshot group
	manual   string // the soak's own snapshots' group
	restored string

	disks    []*protected
	current  *protected
	snapshot map[string]*snapRec // lower-cased id
	points   map[string]*pointRec
	restores map[string]*restoreRec // lower-cased target
	seenJobs map[string]bool
	triggers []backupTrigger
	tmp      string
}

func main() {
	n := flag.Int("n", 100, "number of kill -9 trials")
	binary := flag.String("coffer", "", "the coffer binary (required)")
	db := flag.String("db", os.Getenv("DB"), "postgres://… for the metadata store (default SQLite in the data dir)")
	seed := flag.Uint64("seed", uint64(time.Now().UnixNano()), "random seed (printed; reuse it to replay the same choices)")
	maxDelay := flag.Duration("max-delay", 800*time.Millisecond, "kill at a random delay in [0, max-delay) after each trigger")
	gcInterval := flag.Duration("gc-interval", 2*time.Second, "the server's --gc-interval")
	keep := flag.Bool("keep", false, "keep the data directory and log")
	only := flag.String("only", "", "run only this scenario (nbd-write, snapshot, gc, backup, restore)")
	flag.Parse()
	if *binary == "" {
		fmt.Fprintln(os.Stderr, "soak: -coffer BINARY is required (scripts/soak builds it)")
		os.Exit(2)
	}
	for _, tool := range []string{"qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "soak: %s is needed (Debian package qemu-utils)\n", tool)
			os.Exit(2)
		}
	}
	dir, err := os.MkdirTemp("", "coffer-soak")
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	code := run(dir, *binary, *db, *seed, *n, *maxDelay, *gcInterval, *only, *keep)
	if *keep || code != 0 {
		fmt.Printf("data directory and server log kept in %s\n", dir)
	} else {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func run(dir, binary, db string, seed uint64, n int, maxDelay, gcInterval time.Duration, only string, keep bool) int {
	addr, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	nbdAddr, err := freePort()
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	srv := &server{binary: binary, dataDir: filepath.Join(dir, "data"), db: db, addr: addr, nbdAddr: nbdAddr,
		gcInterval: gcInterval.String(), logPath: filepath.Join(dir, "server.log")}
	defer srv.stop()
	// Interrupted, the soak still stops the server it started and removes
	// what it made.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		srv.stop()
		if !keep {
			os.RemoveAll(dir)
		}
		os.Exit(130)
	}()
	if err := srv.start(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		return 2
	}
	k := &soak{srv: srv, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), maxDelay: maxDelay,
		snapshot: map[string]*snapRec{}, points: map[string]*pointRec{}, restores: map[string]*restoreRec{},
		seenJobs: map[string]bool{}, tmp: dir}
	fmt.Printf("coffer crash soak: %d trials, seed %d, kill delay 0-%s, gc every %s (grace 1s), store %s\n",
		n, seed, maxDelay, gcInterval, map[bool]string{true: "PostgreSQL", false: "SQLite"}[db != ""])
	if err := k.setup(); err != nil {
		fmt.Fprintln(os.Stderr, "soak: setup:", err)
		return 2
	}
	var results []result
	start := time.Now()
	for i := 1; i <= n; i++ {
		sc := scenarios[(i-1)%len(scenarios)]
		if only != "" {
			sc = only
		}
		r := k.trial(i, sc)
		results = append(results, r)
		fmt.Println(line(r))
	}
	// One last look at everything with nothing in flight.
	final := result{scenario: "final"}
	k.settle(&final, true)
	fmt.Printf("final check: %d snapshots, %d recovery points, %d restores re-read; lost %d, half there %d, verify %s\n",
		k.liveSnapshots(), len(k.points), len(k.restores), final.lost, final.half, okWord(final.verifyOK))
	for _, note := range final.notes {
		fmt.Println("  " + note)
	}
	results = append(results, final)
	return summary(results, time.Since(start))
}

func verifyWord(r result) string {
	if !r.verifyRan {
		return "-"
	}
	return okWord(r.verifyOK)
}

func okWord(ok bool) string {
	if ok {
		return "clean"
	}
	return "DAMAGE"
}

func line(r result) string {
	verdict := "OK"
	if r.lost > 0 || r.half > 0 || r.restartFailed > 0 || (r.verifyRan && !r.verifyOK) {
		verdict = "FAIL"
	}
	s := fmt.Sprintf("trial %3d %-9s delay=%3dms acked=%-3d survived=%-3d lost=%d half=%d restart-failed=%d %-26s verify=%s %s (%.1fs)",
		r.trial, r.scenario, r.delay.Milliseconds(), r.acked, r.survived, r.lost, r.half, r.restartFailed, r.outcome, verifyWord(r), verdict, r.elapsed.Seconds())
	for _, n := range r.notes {
		s += "\n      " + n
	}
	return s
}

func summary(results []result, took time.Duration) int {
	type row struct {
		trials, acked, survived, lost, half, restartFailed, verifyBad int
		outcomes                                                      map[string]int
	}
	rows := map[string]*row{}
	order := append(append([]string{}, scenarios...), "final")
	total := &row{outcomes: map[string]int{}}
	for _, r := range results {
		w := rows[r.scenario]
		if w == nil {
			w = &row{outcomes: map[string]int{}}
			rows[r.scenario] = w
		}
		for _, x := range []*row{w, total} {
			if r.scenario != "final" {
				x.trials++
			}
			x.acked += r.acked
			x.survived += r.survived
			x.lost += r.lost
			x.half += r.half
			x.restartFailed += r.restartFailed
			if r.verifyRan && !r.verifyOK {
				x.verifyBad++
			}
			if r.outcome != "" {
				x.outcomes[strings.Fields(r.outcome)[0]]++
			}
		}
	}
	fmt.Printf("\n%-10s %6s %6s %8s %5s %5s %14s %10s  %s\n", "scenario", "trials", "acked", "survived", "lost", "half", "restart-failed", "verify-bad", "outcomes")
	print := func(name string, w *row) {
		var outs []string
		for k, v := range w.outcomes {
			outs = append(outs, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(outs)
		fmt.Printf("%-10s %6d %6d %8d %5d %5d %14d %10d  %s\n", name, w.trials, w.acked, w.survived, w.lost, w.half, w.restartFailed, w.verifyBad, strings.Join(outs, ", "))
	}
	for _, name := range order {
		if w := rows[name]; w != nil {
			print(name, w)
		}
	}
	print("total", total)
	fmt.Printf("took %s\n", took.Round(time.Second))
	if total.lost > 0 || total.half > 0 || total.restartFailed > 0 || total.verifyBad > 0 {
		fmt.Println("RESULT: FAIL (something acknowledged was lost, something is half there, or the server did not come back by itself)")
		return 1
	}
	fmt.Println("RESULT: OK (everything acknowledged survived; every snapshot, job and restore is complete or absent)")
	return 0
}

// setup makes the groups, the vault with its identity's roles, the policy
// and the first protected disk.
func (k *soak) setup() error {
	s := k.srv
	k.sub = uuid.NewString()
	rg := "/subscriptions/" + k.sub + "/resourceGroups/"
	for _, g := range []string{"disks", "vaults", "snaps", "manual", "restored"} {
		if _, _, err := s.must("PUT", rg+g+"?api-version=2021-04-01", `{"location":"westus"}`, 201); err != nil {
			return err
		}
	}
	k.snaps, k.manual, k.restored = rg+"snaps", rg+"manual", rg+"restored"
	k.vault = rg + "vaults/providers/Microsoft.DataProtection/backupVaults/v1"
	h, _, err := s.must("PUT", k.vault+dpAPI, `{"location":"westus","identity":{"type":"SystemAssigned"},"properties":{}}`, 201)
	if err != nil {
		return err
	}
	if _, err := s.wait(h.Get("Azure-AsyncOperation"), time.Minute); err != nil {
		return err
	}
	_, raw, err := s.must("GET", k.vault+dpAPI, "", 200)
	if err != nil {
		return err
	}
	var v struct{ Identity struct{ PrincipalID string } }
	json.Unmarshal(raw, &v)
	principal := v.Identity.PrincipalID
	if principal == "" {
		return fmt.Errorf("vault without a principal: %s", raw)
	}
	// A schedule a day away: only the soak's ad hoc backups run.
	first := time.Now().Add(24 * time.Hour).UTC().Format("2006-01-02T15:04:05")
	k.policy = k.vault + "/backupPolicies/hourly"
	if _, _, err := s.must("PUT", k.policy+dpAPI, `{"properties":{"datasourceTypes":["Microsoft.Compute/disks"],"objectType":"BackupPolicy","policyRules":[
		 {"backupParameters":{"backupType":"Incremental","objectType":"AzureBackupParams"},"name":"BackupHourly","objectType":"AzureBackupRule",
		  "dataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"},
		  "trigger":{"objectType":"ScheduleBasedTriggerContext","schedule":{"repeatingTimeIntervals":["R/`+first+`+00:00/PT1H"],"timeZone":"UTC"},
		   "taggingCriteria":[{"isDefault":true,"taggingPriority":99,"tagInfo":{"tagName":"Default"}}]}},
		 {"isDefault":true,"name":"Default","objectType":"AzureRetentionRule","lifecycles":[{"deleteAfter":{"duration":"P7D","objectType":"AbsoluteDeleteOption"},
		   "sourceDataStore":{"dataStoreType":"OperationalStore","objectType":"DataStoreInfoBase"}}]}]}}`, 200); err != nil {
		return err
	}
	for role, scope := range map[string]string{diskBackupReader: rg + "disks", diskSnapshotContrib: k.snaps, diskRestoreOperator: k.restored} {
		if err := k.assign(principal, role, scope); err != nil {
			return err
		}
	}
	return k.protectNewDisk()
}

func (k *soak) assign(principal, role, scope string) error {
	_, _, err := k.srv.must("PUT", scope+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString()+"?api-version=2022-04-01",
		`{"properties":{"roleDefinitionId":"/providers/Microsoft.Authorization/roleDefinitions/`+role+`","principalId":"`+principal+`"}}`, 201)
	return err
}

// protectNewDisk creates a 1 GiB thin disk, protects it, attaches it and
// makes it the disk the next trials write and back up.
func (k *soak) protectNewDisk() error {
	s := k.srv
	d := &protected{name: fmt.Sprintf("d%d", len(k.disks)+1), img: image{}, pending: map[int64][]byte{}}
	d.id = "/subscriptions/" + k.sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks/" + d.name
	if _, _, err := s.must("PUT", d.id+computeAPI, `{"location":"westus","sku":{"name":"Standard_LRS"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`, 200, 201, 202); err != nil {
		return err
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Millisecond) {
		_, raw, err := s.must("GET", d.id+computeAPI, "", 200)
		if err != nil {
			return err
		}
		if provisioningState(raw) == "Succeeded" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("disk %s never provisioned", d.id)
		}
	}
	d.instance = k.vault + "/backupInstances/" + d.name
	h, _, err := s.must("PUT", d.instance+dpAPI, `{"properties":{"objectType":"BackupInstance",
		"dataSourceInfo":{"objectType":"Datasource","resourceID":"`+d.id+`","resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"},
		"policyInfo":{"policyId":"`+k.policy+`","policyParameters":{"dataStoreParametersList":[{"objectType":"AzureOperationalStoreParameters","dataStoreType":"OperationalStore","resourceGroupId":"`+k.snaps+`"}]}}}}`, 201)
	if err != nil {
		return err
	}
	if st, err := s.wait(h.Get("Azure-AsyncOperation"), time.Minute); err != nil || st != "Succeeded" {
		return fmt.Errorf("protect %s: %s %v", d.id, st, err)
	}
	if err := k.attach(d); err != nil {
		return err
	}
	k.disks = append(k.disks, d)
	k.current = d
	// A few blocks so its first backup has something to carry.
	for j := 0; j < 3; j++ {
		if _, _, ok := k.writeOne(d); !ok {
			return fmt.Errorf("first writes to %s failed", d.id)
		}
	}
	return nil
}

// attach (re)attaches a disk over NBD; after a restart the old attachment's
// export is gone with the process, so the soak detaches and attaches again.
func (k *soak) attach(d *protected) error {
	s := k.srv
	if d.uri != "" {
		if _, _, err := s.must("POST", d.id+"/detach"+computeAPI, "{}", 200); err != nil {
			return err
		}
	}
	_, raw, err := s.must("POST", d.id+"/attach"+computeAPI, "{}", 200)
	if err != nil {
		return err
	}
	var a struct{ NbdURI string }
	json.Unmarshal(raw, &a)
	if a.NbdURI == "" {
		return fmt.Errorf("attach %s: %s", d.id, raw)
	}
	d.uri = a.NbdURI
	return nil
}

// writeOne writes a random block with a fill byte it does not hold now;
// until qemu-io says the write and flush are done it is only a candidate.
func (k *soak) writeOne(d *protected) (int64, byte, bool) {
	off := k.rng.Int64N(diskSize/block) * block
	for off >= ballastOff && off < ballastOff+ballastLen {
		off = k.rng.Int64N(diskSize/block) * block
	}
	p := byte(1 + k.rng.IntN(255))
	for p == d.img[off] {
		p = byte(1 + k.rng.IntN(255))
	}
	d.pending[off] = append(d.pending[off], p)
	if !qemuWrite(d.uri, off, p) {
		return off, p, false
	}
	d.img[off] = p
	// Acknowledged: earlier candidates for the block are overwritten.
	delete(d.pending, off)
	return off, p, true
}

// newBallast rewrites the disk's ballast region with fresh random bytes.
func (k *soak) newBallast(d *protected) error {
	seed := k.rng.Uint64() | 1
	if err := qemuWriteBallast(d.uri, filepath.Join(k.tmp, "ballast"), seed); err != nil {
		return err
	}
	d.ballast = seed
	return nil
}

func provisioningState(raw []byte) string {
	var r struct {
		Properties struct{ ProvisioningState string }
	}
	json.Unmarshal(raw, &r)
	return r.Properties.ProvisioningState
}

func (k *soak) delay() time.Duration {
	return time.Duration(k.rng.Int64N(int64(k.maxDelay) + 1))
}

// killRestart kills the server by its PID and starts it again on the same
// data directory and ports.
func (k *soak) killRestart(r *result) bool {
	r.gcPassesBeforeTheKill = k.srv.gcSeen()
	k.srv.kill9()
	return k.restart(r)
}

// restart starts the server after a kill. A start that fails is a finding
// of its own (the server must come back by itself); the soak records it
// with the log's last line and tries again, so the trials go on.
func (k *soak) restart(r *result) bool {
	for attempt := 1; ; attempt++ {
		err := k.srv.start()
		if err == nil {
			return true
		}
		r.restartFailed++
		r.notes = append(r.notes, fmt.Sprintf("RESTART FAILED (attempt %d): %v: %s", attempt, err, k.srv.lastLogLine()))
		if attempt == 3 {
			return false
		}
	}
}

// watch polls a status monitor until stop is closed and reports whether it
// saw Succeeded: the acknowledgement of an operation.
func (k *soak) watch(monitor string, stop chan struct{}) (acked *atomic.Bool, done *sync.WaitGroup) {
	acked, done = &atomic.Bool{}, &sync.WaitGroup{}
	done.Add(1)
	go func() {
		defer done.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, _, raw, err := k.srv.do("GET", monitor, "")
			if err == nil && code == 200 && strings.Contains(string(raw), `"status":"Succeeded"`) {
				acked.Store(true)
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
	}()
	return acked, done
}

// killWatching watches monitor while the trial's delay runs out, kills and
// restarts the server, and reports whether the operation was acknowledged
// (Succeeded seen) before the kill, counting it in r, and whether the
// restart worked.
func (k *soak) killWatching(r *result, monitor string) (acked, restarted bool) {
	stop := make(chan struct{})
	seen, done := k.watch(monitor, stop)
	time.Sleep(r.delay)
	restarted = k.killRestart(r)
	close(stop)
	done.Wait()
	if acked = seen.Load(); acked && restarted {
		r.acked = 1
	}
	return acked, restarted
}

func (k *soak) trial(i int, scenario string) result {
	r := result{trial: i, scenario: scenario, delay: k.delay()}
	start := time.Now()
	switch scenario {
	case "nbd-write":
		k.nbdWrites(&r)
	case "snapshot":
		k.snapshotUpload(&r)
	case "gc":
		k.gc(&r)
	case "backup":
		k.backup(&r)
	case "restore":
		k.restore(&r)
	default:
		r.problem(false, "unknown scenario %q", scenario)
	}
	r.elapsed = time.Since(start)
	return r
}

// nbdWrites: flushed 64 KiB writes to random blocks until the kill.
func (k *soak) nbdWrites(r *result) {
	d := k.current
	var stop atomic.Bool
	var acked [][2]int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if off, p, ok := k.writeOne(d); ok {
				acked = append(acked, [2]int64{off, int64(p)})
			}
		}
	}()
	time.Sleep(r.delay)
	r.gcPassesBeforeTheKill = k.srv.gcSeen()
	k.srv.kill9()
	stop.Store(true)
	wg.Wait()
	if !k.restart(r) {
		return
	}
	r.acked = len(acked)
	lost := k.settle(r, false)
	for _, w := range acked {
		if !lost[blockKey(d, w[0])] {
			r.survived++
		}
	}
	r.outcome = fmt.Sprintf("written %d", len(acked))
}

// snapshotUpload: a snapshot PUT, killed while it uploads.
func (k *soak) snapshotUpload(r *result) {
	d := k.current
	if err := k.newBallast(d); err != nil {
		r.problem(false, "%v", err)
		return
	}
	rec := &snapRec{id: fmt.Sprintf("%s/providers/Microsoft.Compute/snapshots/s%d", k.manual, r.trial), source: d, want: d.img.clone(), ballast: d.ballast, trial: r.trial}
	h, _, err := k.srv.must("PUT", rec.id+computeAPI, `{"location":"westus","properties":{"incremental":true,
		"creationData":{"createOption":"Copy","sourceResourceId":"`+d.id+`"}}}`, 202)
	if err != nil {
		r.problem(false, "snapshot PUT: %v", err)
		return
	}
	k.snapshot[strings.ToLower(rec.id)] = rec
	acked, ok := k.killWatching(r, h.Get("Azure-AsyncOperation"))
	if !ok {
		return
	}
	rec.acked = acked
	k.settle(r, false)
	switch {
	case k.snapshot[strings.ToLower(rec.id)] == nil:
		r.outcome = "absent"
	case rec.verified:
		r.outcome = "complete"
		if rec.acked {
			r.survived = 1
		}
	default:
		r.outcome = "damaged"
	}
}

// gc: new snapshots, then the deletion of most snapshots and every
// restored disk, killed while the collector frees their chunks.
func (k *soak) gc(r *result) {
	s, d := k.srv, k.current
	var keep *snapRec
	for _, rec := range k.snapshot {
		if rec.source != nil && strings.HasPrefix(strings.ToLower(rec.id), strings.ToLower(k.manual)) && !rec.deleted && rec.acked &&
			(keep == nil || rec.trial > keep.trial) {
			keep = rec
		}
	}
	for j := 1; j <= 2; j++ {
		for w := 0; w < 2; w++ {
			if _, _, ok := k.writeOne(d); !ok {
				r.problem(false, "write before the GC trial's snapshots failed")
			}
		}
		if err := k.newBallast(d); err != nil {
			r.problem(false, "%v", err)
			return
		}
		rec := &snapRec{id: fmt.Sprintf("%s/providers/Microsoft.Compute/snapshots/g%d-%d", k.manual, r.trial, j), source: d, want: d.img.clone(), ballast: d.ballast, trial: r.trial}
		h, _, err := s.must("PUT", rec.id+computeAPI, `{"location":"westus","properties":{"incremental":true,
			"creationData":{"createOption":"Copy","sourceResourceId":"`+d.id+`"}}}`, 202)
		if err != nil {
			r.problem(false, "snapshot PUT: %v", err)
			return
		}
		k.snapshot[strings.ToLower(rec.id)] = rec
		if st, err := s.wait(h.Get("Azure-AsyncOperation"), settleBound); err != nil || st != "Succeeded" {
			r.problem(false, "snapshot %s before GC: %s %v", rec.id, st, err)
			return
		}
		rec.acked = true
	}
	var ids []string
	for _, rec := range k.snapshot {
		if rec != keep && !rec.deleted && strings.HasPrefix(strings.ToLower(rec.id), strings.ToLower(k.manual)) {
			ids = append(ids, rec.id)
		}
	}
	for _, rr := range k.restores {
		if !rr.deleted && rr.status != "" {
			ids = append(ids, rr.target)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		h, _, err := s.must("DELETE", id+computeAPI, "", 200, 202, 204)
		if err != nil {
			r.problem(false, "delete: %v", err)
			continue
		}
		if m := h.Get("Azure-AsyncOperation"); m != "" {
			if st, err := s.wait(m, settleBound); err != nil || st != "Succeeded" {
				r.problem(false, "delete %s: %s %v", id, st, err)
				continue
			}
		}
		r.acked++
		if rec := k.snapshot[strings.ToLower(id)]; rec != nil {
			rec.deleted = true
		} else if rr := k.restores[strings.ToLower(id)]; rr != nil {
			rr.deleted = true
		}
	}
	gcBefore := s.gcSeen()
	time.Sleep(r.delay)
	if !k.killRestart(r) {
		return
	}
	lostBefore := r.lost
	k.settle(r, true)
	r.survived = r.acked - (r.lost - lostBefore)
	if r.survived < 0 {
		r.survived = 0
	}
	r.outcome = fmt.Sprintf("deleted %d, gc passes %d", len(ids), r.gcPassesBeforeTheKill-gcBefore)
}

// backup: an ad hoc backup, killed while its job runs.
func (k *soak) backup(r *result) {
	if k.current.adHoc >= adHocBudget {
		if err := k.protectNewDisk(); err != nil {
			r.problem(false, "protect a new disk: %v", err)
			return
		}
	}
	h, ok := k.startBackup(r, k.current)
	if !ok {
		return
	}
	acked, restarted := k.killWatching(r, h)
	if !restarted {
		return
	}
	k.settle(r, false)
	if r.outcome == "Completed" && acked {
		r.survived = 1
	}
	if r.outcome == "" {
		r.problem(false, "no job found for the backup request")
	}
}

func (k *soak) startBackup(r *result, d *protected) (string, bool) {
	if err := k.newBallast(d); err != nil {
		r.problem(false, "%v", err)
		return "", false
	}
	h, _, err := k.srv.must("POST", d.instance+"/backup"+dpAPI, `{"backupRuleOptions":{"ruleName":"BackupHourly","objectType":"AdhocBackupRuleOptions","triggerOption":{"retentionTagOverride":"Default"}}}`, 202)
	if err != nil {
		r.problem(false, "backup request: %v", err)
		return "", false
	}
	d.adHoc++
	k.triggers = append(k.triggers, backupTrigger{disk: d, want: d.img.clone(), ballast: d.ballast, trial: r.trial})
	return h.Get("Azure-AsyncOperation"), true
}

// restore: a restore of a recovery point to a new disk, killed while it
// runs.
func (k *soak) restore(r *result) {
	restorable := func() []string {
		var names []string
		for name, p := range k.points {
			if k.snapshot[strings.ToLower(p.snapshot)] != nil && p.source.restores < restoreBudget {
				names = append(names, name)
			}
		}
		return names
	}
	names := restorable()
	if len(names) == 0 && (k.current.restores >= restoreBudget || k.current.adHoc >= adHocBudget) {
		if err := k.protectNewDisk(); err != nil {
			r.problem(false, "protect a new disk: %v", err)
			return
		}
	}
	if len(names) == 0 {
		// Nothing to restore yet: one backup, not killed, first.
		h, ok := k.startBackup(r, k.current)
		if !ok {
			return
		}
		k.srv.wait(h, settleBound)
		k.settle(r, false)
		if names = restorable(); len(names) == 0 {
			r.problem(false, "no recovery point to restore")
			return
		}
		r.outcome = ""
	}
	sort.Strings(names)
	p := k.points[names[k.rng.IntN(len(names))]]
	target := fmt.Sprintf("%s/providers/Microsoft.Compute/disks/r%d", k.restored, r.trial)
	h, _, err := k.srv.must("POST", p.instance+"/restore"+dpAPI, `{"objectType":"AzureBackupRecoveryPointBasedRestoreRequest",
		"recoveryPointId":"`+p.name+`","sourceDataStoreType":"OperationalStore","restoreTargetInfo":{"objectType":"restoreTargetInfo",
		"recoveryOption":"FailIfExists","restoreLocation":"westus","datasourceInfo":{"objectType":"Datasource","resourceID":"`+target+`",
		"resourceType":"Microsoft.Compute/disks","datasourceType":"Microsoft.Compute/disks"}}}`, 202)
	if err != nil {
		r.problem(false, "restore request: %v", err)
		return
	}
	p.source.restores++
	rr := &restoreRec{target: target, point: p, trial: r.trial}
	k.restores[strings.ToLower(target)] = rr
	acked, restarted := k.killWatching(r, h.Get("Azure-AsyncOperation"))
	if !restarted {
		return
	}
	k.settle(r, false)
	r.outcome = rr.status
	if rr.status == "Completed" && rr.verified && acked {
		r.survived = 1
	}
	if rr.status == "" {
		r.problem(false, "restore job for %s never ended", target)
	}
}

func (k *soak) liveSnapshots() int {
	n := 0
	for _, rec := range k.snapshot {
		if !rec.deleted {
			n++
		}
	}
	return n
}
