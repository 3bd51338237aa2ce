package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func blockKey(d *protected, off int64) string { return fmt.Sprintf("%s@%d", d.name, off) }

type wireJob struct {
	Name       string
	Properties struct {
		Operation, Status, BackupInstanceID string
		ErrorDetails                        []struct{ Code string }
		ExtendedInfo                        struct {
			AdditionalDetails   map[string]string
			RecoveryDestination string
		}
	}
}

func (j wireJob) code() string {
	if len(j.Properties.ErrorDetails) > 0 {
		return j.Properties.ErrorDetails[0].Code
	}
	return ""
}

type wireResource struct {
	ID         string
	Properties struct{ ProvisioningState string }
}

// settle runs after every restart: it checks the flushed writes, waits
// for in-flight work to end, then checks jobs, recovery points, snapshots
// and restored disks against what the soak was told, and runs coffer
// verify. full re-reads every snapshot and restored disk, not only new
// ones. It returns the blocks whose acknowledged write was lost.
func (k *soak) settle(r *result, full bool) map[string]bool {
	lost := map[string]bool{}
	s := k.srv
	r.verifyOK = false

	// Flushed writes read back, on every protected disk.
	for _, d := range k.disks {
		if err := k.attach(d); err != nil {
			r.problem(false, "re-attach %s: %v", d.name, err)
			continue
		}
		offs := offsets(d.img, pendingImage(d))
		bad, err := qemuCheck(d.uri, offs, d.img)
		if err != nil {
			r.problem(false, "%v", err)
			continue
		}
		for _, off := range bad {
			landed := false
			for _, p := range d.pending[off] {
				if b, err := qemuCheck(d.uri, []int64{off}, image{off: p}); err == nil && len(b) == 0 {
					d.img[off], landed = p, true // an unacknowledged write that made it: allowed
					break
				}
			}
			if !landed {
				lost[blockKey(d, off)] = true
				r.problem(true, "LOST WRITE: %s block at %d should be filled with 0x%02x (acknowledged) or one of %v (in flight), reads otherwise",
					d.id, off, d.img[off], d.pending[off])
				// Reported once; later trials go on from what is there.
				delete(d.img, off)
			}
		}
		d.pending = map[int64][]byte{}
		if ok, err := qemuBallastMatches(d.uri, filepath.Join(k.tmp, "ballast-read"), d.ballast); err != nil {
			r.problem(false, "%v", err)
		} else if !ok {
			r.problem(true, "LOST WRITE: %s ballast region [%d, +%d) differs from its acknowledged content", d.id, ballastOff, ballastLen)
		}
	}

	// In-flight work ends within the bound.
	var snaps, disks []wireResource
	var jobs []wireJob
	deadline := time.Now().Add(settleBound)
	for {
		var busy []string
		var err error
		snaps, disks, jobs, err = k.inventory()
		if err != nil {
			r.problem(false, "inventory: %v", err)
			return lost
		}
		for _, x := range snaps {
			if st := x.Properties.ProvisioningState; st != "Succeeded" && st != "Failed" {
				busy = append(busy, "snapshot "+x.ID+" "+st)
			}
		}
		for _, x := range disks {
			if st := x.Properties.ProvisioningState; st != "Succeeded" && st != "Failed" {
				busy = append(busy, "disk "+x.ID+" "+st)
			}
		}
		for _, j := range jobs {
			if j.Properties.Status == "InProgress" {
				busy = append(busy, j.Properties.Operation+" job "+j.Name+" InProgress")
			}
		}
		if len(busy) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, b := range busy {
				r.problem(false, "STUCK after %s: %s", settleBound, b)
			}
			break
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Jobs, oldest first: each backup request is one job; a Completed one
	// has its point and snapshot; a restore ends with its disk or none.
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		if k.seenJobs[j.Name] || j.Properties.Status == "InProgress" {
			continue
		}
		k.seenJobs[j.Name] = true
		switch j.Properties.Operation {
		case "Backup", "AdhocBackup", "OnDemandBackup":
			k.backupJob(r, j)
		case "Restore":
			k.restoreJob(r, j)
		default:
			r.problem(false, "job %s with operation %q", j.Name, j.Properties.Operation)
		}
	}
	for _, t := range k.triggers {
		if t.trial == r.trial {
			r.problem(false, "HALF: the backup request of trial %d has no job", t.trial)
		}
	}

	// Recovery points: exactly those of the Completed jobs.
	for _, d := range k.disks {
		list, err := s.list(d.instance + "/recoveryPoints" + dpAPI)
		if err != nil {
			r.problem(false, "points: %v", err)
			continue
		}
		listed := map[string]bool{}
		for _, raw := range list {
			var p struct{ Name string }
			json.Unmarshal(raw, &p)
			listed[p.Name] = true
			if k.points[p.Name] == nil {
				r.problem(false, "HALF: recovery point %s of %s has no Completed job", p.Name, d.name)
			}
		}
		for name, p := range k.points {
			if strings.EqualFold(p.instance, d.instance) && !listed[name] {
				r.problem(true, "LOST: recovery point %s of a Completed job is gone", name)
			}
		}
	}

	// Snapshots: complete (and reading back their image) or absent.
	listed := map[string]string{}
	for _, x := range snaps {
		listed[strings.ToLower(x.ID)] = x.Properties.ProvisioningState
		if k.snapshot[strings.ToLower(x.ID)] == nil {
			r.problem(false, "HALF: snapshot %s (%s) belongs to no recovery point and no soak step", x.ID, x.Properties.ProvisioningState)
		} else if x.Properties.ProvisioningState != "Succeeded" {
			r.problem(false, "HALF: snapshot %s is %s", x.ID, x.Properties.ProvisioningState)
		}
	}
	ids := make([]string, 0, len(k.snapshot))
	for id := range k.snapshot {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rec := k.snapshot[id]
		st, present := listed[id]
		switch {
		case rec.deleted && present:
			r.problem(true, "LOST DELETE: snapshot %s was deleted (acknowledged) and is back", rec.id)
		case rec.deleted:
		case !present && rec.acked:
			r.problem(true, "LOST: snapshot %s (acknowledged Succeeded) is gone", rec.id)
			delete(k.snapshot, id)
		case !present:
			delete(k.snapshot, id) // cut before it finished: absent, as it should be
		case st == "Succeeded" && (!rec.verified || (full && k.recheck(r, rec))):
			bad, err := s.sasCheck(rec.id, offsets(rec.want, rec.source.img), rec.want, rec.ballast)
			if err != nil {
				r.problem(rec.acked, "snapshot %s does not read back: %v", rec.id, err)
				continue
			}
			if len(bad) > 0 {
				r.problem(true, "DAMAGED: snapshot %s differs from its disk at the snapshot's moment at %d blocks (first at %d)", rec.id, len(bad), bad[0])
				continue
			}
			rec.verified, rec.acked = true, true
		}
	}

	// Restored disks: the ones of Completed restores, equal to their point.
	onDisk := map[string]string{}
	for _, x := range disks {
		onDisk[strings.ToLower(x.ID)] = x.Properties.ProvisioningState
		if k.restores[strings.ToLower(x.ID)] == nil {
			r.problem(false, "HALF: disk %s belongs to no restore", x.ID)
		}
	}
	for id, rr := range k.restores {
		_, present := onDisk[id]
		switch {
		case rr.deleted && present:
			r.problem(true, "LOST DELETE: restored disk %s was deleted (acknowledged) and is back", rr.target)
		case rr.deleted:
		case rr.status == "Completed" && !present:
			r.problem(true, "LOST: disk %s of a Completed restore is gone", rr.target)
		case rr.status == "Completed" && (!rr.verified || full):
			bad, err := s.sasCheck(rr.target, offsets(rr.point.want, rr.point.source.img), rr.point.want, rr.point.ballast)
			if err != nil {
				r.problem(true, "restored disk %s does not read back: %v", rr.target, err)
				continue
			}
			if len(bad) > 0 {
				r.problem(true, "DAMAGED: restored disk %s differs from recovery point %s at %d blocks (first at %d)", rr.target, rr.point.name, len(bad), bad[0])
				continue
			}
			rr.verified = true
		case strings.HasPrefix(rr.status, "Failed") && present:
			r.problem(false, "HALF: restore to %s Failed but left the disk (%s)", rr.target, onDisk[id])
		}
	}

	args := []string{"verify", "--data-dir", s.dataDir}
	if s.db != "" {
		args = append(args, "--db", s.db)
	}
	out, err := exec.Command(s.binary, args...).CombinedOutput()
	r.verifyRan = true
	r.verifyOK = err == nil && strings.Contains(string(out), "no damage found")
	if !r.verifyOK {
		r.notes = append(r.notes, fmt.Sprintf("coffer verify: %v: %s", err, tailLines(string(out), 10)))
	}
	return lost
}

// recheck says whether a full check re-reads a snapshot read before: the
// soak's own snapshots always (GC deletes their neighbours), a recovery
// point's one in four, and every one in the final check.
func (k *soak) recheck(r *result, rec *snapRec) bool {
	return r.scenario == "final" || strings.HasPrefix(strings.ToLower(rec.id), strings.ToLower(k.manual)) || k.rng.IntN(4) == 0
}

func (k *soak) backupJob(r *result, j wireJob) {
	at := -1
	for i, t := range k.triggers {
		if strings.EqualFold(t.disk.instance, j.Properties.BackupInstanceID) {
			at = i
			break
		}
	}
	if at < 0 {
		r.problem(false, "HALF: backup job %s (%s) answers no request", j.Name, j.Properties.Status)
		return
	}
	t := k.triggers[at]
	k.triggers = append(k.triggers[:at], k.triggers[at+1:]...)
	if t.trial == r.trial {
		r.outcome = strings.TrimSpace(j.Properties.Status + " " + j.code())
	}
	if j.Properties.Status != "Completed" {
		return
	}
	details := j.Properties.ExtendedInfo.AdditionalDetails
	point, snap := details["RecoveryPointId"], details["SnapshotId"]
	if point == "" || snap == "" {
		r.problem(false, "HALF: Completed backup job %s names no recovery point or snapshot: %v", j.Name, details)
		return
	}
	if k.points[point] != nil {
		r.problem(false, "HALF: recovery point %s claimed by two jobs", point)
		return
	}
	k.points[point] = &pointRec{name: point, instance: t.disk.instance, snapshot: snap, want: t.want, ballast: t.ballast, source: t.disk}
	k.snapshot[strings.ToLower(snap)] = &snapRec{id: snap, source: t.disk, want: t.want, ballast: t.ballast, acked: true, trial: t.trial}
}

func (k *soak) restoreJob(r *result, j wireJob) {
	target := j.Properties.ExtendedInfo.RecoveryDestination
	rr := k.restores[strings.ToLower(target)]
	if rr == nil {
		r.problem(false, "HALF: restore job %s to %q answers no request", j.Name, target)
		return
	}
	if rr.status != "" {
		r.problem(false, "HALF: a second restore job %s to %s", j.Name, target)
		return
	}
	rr.status = strings.TrimSpace(j.Properties.Status + " " + j.code())
}

// inventory lists the snapshots of both snapshot groups, the restored
// disks and the vault's jobs.
func (k *soak) inventory() (snaps, disks []wireResource, jobs []wireJob, err error) {
	decode := func(path string, into func(json.RawMessage) error) error {
		list, err := k.srv.list(path)
		if err != nil {
			return err
		}
		for _, raw := range list {
			if err := into(raw); err != nil {
				return err
			}
		}
		return nil
	}
	for _, g := range []string{k.manual, k.snaps} {
		if err := decode(g+"/providers/Microsoft.Compute/snapshots"+computeAPI, func(raw json.RawMessage) error {
			var x wireResource
			snaps = append(snaps, x)
			return json.Unmarshal(raw, &snaps[len(snaps)-1])
		}); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := decode(k.restored+"/providers/Microsoft.Compute/disks"+computeAPI, func(raw json.RawMessage) error {
		var x wireResource
		disks = append(disks, x)
		return json.Unmarshal(raw, &disks[len(disks)-1])
	}); err != nil {
		return nil, nil, nil, err
	}
	if err := decode(k.vault+"/backupJobs"+dpAPI, func(raw json.RawMessage) error {
		var x wireJob
		jobs = append(jobs, x)
		return json.Unmarshal(raw, &jobs[len(jobs)-1])
	}); err != nil {
		return nil, nil, nil, err
	}
	return snaps, disks, jobs, nil
}

func pendingImage(d *protected) image {
	m := image{}
	for off := range d.pending {
		m[off] = 0
	}
	return m
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
