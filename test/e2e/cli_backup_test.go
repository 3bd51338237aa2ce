package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// printedCommands are the lines of out that are coffer commands for the
// user to run next, as printed.
func printedCommands(out string) []string {
	var cmds []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "coffer "); i >= 0 && (i == 0 || strings.HasSuffix(line[:i], ": ")) {
			cmds = append(cmds, line[i:])
		}
	}
	return cmds
}

// paste runs a printed coffer command through a shell exactly as printed,
// with no COFFER_* variables: it works only if it carries the connection
// flags itself.
func paste(t *testing.T, command string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", binary+strings.TrimPrefix(command, "coffer"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COFFER_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pasted %q: %v\n%s", command, err, out)
	}
	return string(out)
}

// field is the value of the first "name: value" line of out.
func field(t *testing.T, out, name string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, name+": "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q line in:\n%s", name, out)
	return ""
}

// tableRows are the rows of a table a command printed, without its header.
func tableRows(out string) [][]string {
	var rows [][]string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, line := range lines[1:] {
		rows = append(rows, strings.Fields(line))
	}
	return rows
}

func TestBackupCLI(t *testing.T) {
	requireTool(t, "qemu-io")
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testBackupCLI(t, startServer(t, b.db(t))) })
	}
}

// testBackupCLI drives backup now, jobs, points and restore through the
// binary: two backups of a disk changed between them, the first restored
// to a new disk whose bytes are the disk's at that first backup; the
// commands printed for the user (a role grant, a detach, a jobs watch) run
// as printed; bad names fail with a clear message and a non-zero exit.
func testBackupCLI(t *testing.T, s *server) {
	admin := s.token()
	sub := newSubscription()
	for _, g := range []string{"disks", "vaults", "snaps", "restored"} {
		s.mustDo("PUT", "/subscriptions/"+sub+"/resourceGroups/"+g+"?api-version=2021-04-01", admin, `{"location":"westus"}`, 201)
	}
	dir := t.TempDir()
	image := filepath.Join(dir, "db1.raw")
	data := randomBytes(t, 4*mib)
	if err := os.WriteFile(image, append(data, make([]byte, 28*mib)...), 0o644); err != nil {
		t.Fatal(err)
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := s.run(args...)
		if err != nil {
			t.Fatalf("coffer %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	inVault := []string{"--vault", "backups", "-g", "vaults", "--subscription", sub}
	disk := "/subscriptions/" + sub + "/resourceGroups/disks/providers/Microsoft.Compute/disks/db1"
	must("disk", "import", image, "-g", "disks", "--name", "db1", "--subscription", sub)
	must("vault", "create", "backups", "-g", "vaults", "--subscription", sub)
	must("policy", "create", "disk-default", "--vault", "backups", "-g", "vaults", "--subscription", sub, "--default-disk")
	out := must(append([]string{"protect", disk, "--policy", "disk-default", "--name", "db1", "--assign-roles",
		"--snapshot-rg", "/subscriptions/" + sub + "/resourceGroups/snaps"}, inVault...)...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	bi := strings.TrimSpace(lines[len(lines)-1][strings.Index(lines[len(lines)-1], "\t"):])

	// The first backup, by the instance's id.
	out = must("backup", "now", bi)
	job1, point1 := field(t, out, "job"), field(t, out, "recovery point")
	if !strings.HasPrefix(job1, strings.TrimSuffix(bi, "/backupInstances/db1")+"/backupJobs/") || point1 == "" {
		t.Fatalf("backup now:\n%s", out)
	}

	// The disk changes, through NBD; the detach command printed runs as is.
	attach := exec.Command(binary, "disk", "attach", disk, "--data-dir", s.dataDir)
	var stderr strings.Builder
	attach.Stderr = &stderr
	uri, err := attach.Output()
	if err != nil {
		t.Fatalf("attach: %v\n%s", err, stderr.String())
	}
	run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 1M", "-c", "flush", strings.TrimSpace(string(uri)))
	detach := printedCommands(stderr.String())
	if len(detach) != 1 || !strings.Contains(detach[0], "--data-dir "+s.dataDir) {
		t.Fatalf("attach printed no detach command with the data dir:\n%s", stderr.String())
	}
	paste(t, detach[0])

	// The second backup, by name in the vault, without waiting.
	out = must(append([]string{"backup", "now", "db1", "--no-wait"}, inVault...)...)
	watch := printedCommands(out)
	if len(watch) != 1 || !strings.HasPrefix(watch[0], "coffer jobs --vault ") {
		t.Fatalf("backup now --no-wait printed no jobs command:\n%s", out)
	}
	var jobs [][]string
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		out = paste(t, watch[0])
		if jobs = tableRows(out); len(jobs) == 2 && !strings.Contains(out, "InProgress") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second backup did not end:\n%s", out)
		}
	}
	// Newest first: OPERATION STATUS INSTANCE DATE TIME DURATION ERROR JOB.
	for i, want := range []string{"", job1[strings.LastIndex(job1, "/")+1:]} {
		r := jobs[i]
		if len(r) != 8 || r[0] != "Backup" || r[1] != "Completed" || r[2] != "db1" || r[6] != "-" || want != "" && r[7] != want {
			t.Fatalf("jobs, row %d:\n%s", i, out)
		}
	}
	if jobs[0][7] == jobs[1][7] {
		t.Fatalf("one job listed twice:\n%s", out)
	}

	// Oldest first: TIME ID TAG EXPIRES.
	out = must(append([]string{"points", "db1"}, inVault...)...)
	points := tableRows(out)
	if len(points) != 2 || points[0][1] != point1 || points[0][2] != "Default" || points[1][1] == point1 {
		t.Fatalf("points:\n%s", out)
	}

	// The restore stops at the missing role with the grant to paste.
	target := "/subscriptions/" + sub + "/resourceGroups/restored/providers/Microsoft.Compute/disks/db1-restored"
	out, err = s.run("restore", bi, "--point", point1, "--to", target)
	grants := printedCommands(out)
	if err == nil || len(grants) != 1 || !strings.Contains(grants[0], "--role 'Disk Restore Operator'") ||
		!strings.Contains(grants[0], "--scope /subscriptions/"+sub+"/resourceGroups/restored --data-dir "+s.dataDir) {
		t.Fatalf("restore without the role: %v\n%s", err, out)
	}
	paste(t, grants[0])
	out = must("restore", bi, "--point", point1, "--to", target)
	if field(t, out, "disk") != target || !strings.Contains(field(t, out, "job"), "/backupJobs/") || !strings.Contains(out, "usable now") {
		t.Fatalf("restore:\n%s", out)
	}
	restored := filepath.Join(dir, "restored.raw")
	must("disk", "export", target, restored)
	if out, err := exec.Command("cmp", image, restored).CombinedOutput(); err != nil {
		t.Fatalf("the restored disk is not the disk at the first backup: %v\n%s", err, out)
	}
	out = must(append([]string{"jobs"}, inVault...)...)
	if rows := tableRows(out); len(rows) != 3 || rows[0][0] != "Restore" || rows[0][1] != "Completed" {
		t.Fatalf("jobs after the restore:\n%s", out)
	}

	// Bad names: a clear message and a non-zero exit.
	missing := strings.TrimSuffix(bi, "db1") + "nope"
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"backup", "now", "/subscriptions/" + sub + "/resourceGroups/vaults"}, []string{"is not a backup instance id"}},
		{[]string{"backup", "now", "db1"}, []string{"a name needs --vault"}},
		{[]string{"backup", "now", missing}, []string{"ResourceNotFound", "'nope'"}},
		{[]string{"points", missing}, []string{"ResourceNotFound", "'nope'"}},
		{[]string{"restore", bi, "--point", "nope", "--to", target + "2"}, []string{"UserErrorRecoveryPointNotFound", "'nope'", "coffer points " + bi + " --data-dir " + s.dataDir}},
		{[]string{"restore", bi, "--point", point1, "--to", "db1-restored"}, []string{"give the full id of the new disk"}},
		{[]string{"restore", bi, "--point", points[1][1], "--to", target}, []string{"UserErrorDiskAlreadyExists"}},
	} {
		out, err := s.run(c.args...)
		var exit *exec.ExitError
		if !errAs(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("coffer %s: %v, want a non-zero exit\n%s", strings.Join(c.args, " "), err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Fatalf("coffer %s: output lacks %q:\n%s", strings.Join(c.args, " "), w, out)
			}
		}
		if strings.Contains(out, "panic") || strings.Contains(out, "HTTP 500") {
			t.Fatalf("coffer %s:\n%s", strings.Join(c.args, " "), out)
		}
	}
}

func errAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}
