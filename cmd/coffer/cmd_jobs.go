package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/spf13/cobra"
)

func newJobsCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var vault string
	var watch bool
	cmd := &cobra.Command{
		Use:   "jobs --vault VAULT [--watch]",
		Short: "List a vault's backup and restore jobs, newest first",
		Long: `List the jobs of a Backup vault, newest first: each scheduled or on-demand
backup and each restore, with its status, the backup instance, when it
started, how long it took (or has taken so far) and, for a failed job, its
error code.

--watch redraws the table every second until you press Ctrl-C. When the
output is not a terminal (a pipe or a file), it prints the table again only
when a job starts, ends or fails.`,
		Example: `  coffer jobs --vault backups -g vaults --subscription $SUB --data-dir ./coffer-data
  coffer jobs --vault /subscriptions/$SUB/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/backups --watch`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, c, err := vaultTarget(&cf, &df, vault)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !watch {
				jobs, err := listJobs(cmd.Context(), c, id)
				if err != nil {
					return err
				}
				_, err = io.WriteString(out, jobTable(jobs, time.Now()))
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return watchJobs(ctx, c, id, out, isTerminal(out))
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the vault (when --vault is a name)")
	cmd.Flags().StringVar(&vault, "vault", "", "vault name or id (required)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "redraw the table every second until interrupted")
	cmd.MarkFlagRequired("vault")
	return cmd
}

// listJobs reads every job of the vault, newest first.
func listJobs(ctx context.Context, c *armclient.Client, vaultID string) ([]backupJob, error) {
	jobs, err := armclient.List[backupJob](ctx, c, vaultID+"/backupJobs", protectionVersion, nil)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(jobs, func(i, j int) bool { return jobs[i].Properties.StartTime.After(jobs[j].Properties.StartTime) })
	return jobs, nil
}

// jobTable renders jobs; a running job's duration is counted to now.
func jobTable(jobs []backupJob, now time.Time) string {
	var b bytes.Buffer
	w := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "OPERATION\tSTATUS\tINSTANCE\tSTART (UTC)\tDURATION\tERROR\tJOB")
	for _, j := range jobs {
		p := j.Properties
		d, ok := parseISODuration(p.Duration)
		if p.EndTime == nil || !ok {
			d = now.Sub(p.StartTime)
		}
		code := "-"
		if len(p.ErrorDetails) > 0 {
			code = p.ErrorDetails[0].Code
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Operation, p.Status, lastSegment(p.BackupInstanceID),
			p.StartTime.UTC().Format("2006-01-02 15:04:05"), roundDuration(d), code, j.Name)
	}
	w.Flush()
	if len(jobs) == 0 {
		b.WriteString("(no jobs yet)\n")
	}
	return b.String()
}

// jobsState is what a change of the table means: a job started, ended or
// failed. Running durations tick every second and are not a change.
func jobsState(jobs []backupJob) string {
	var b strings.Builder
	for _, j := range jobs {
		b.WriteString(j.Name + "=" + j.Properties.Status + ";")
	}
	return b.String()
}

// watchJobs redraws the vault's jobs every second until ctx ends. On a
// terminal the screen is cleared and the table drawn again; elsewhere the
// table is printed once per change. A failed poll is shown and the watch
// goes on, so a restarting server does not end it.
func watchJobs(ctx context.Context, c *armclient.Client, vaultID string, out io.Writer, terminal bool) error {
	lastState, lastErr := "\x00", ""
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		jobs, err := listJobs(ctx, c, vaultID)
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		switch {
		case terminal:
			screen := "\x1b[H\x1b[2J" + "jobs of " + vaultID + " at " + now.UTC().Format("15:04:05") + " (Ctrl-C to stop)\n\n"
			if err != nil {
				screen += "error: " + err.Error() + "\n"
			} else {
				screen += jobTable(jobs, now)
			}
			io.WriteString(out, screen)
		case err != nil:
			if err.Error() != lastErr {
				fmt.Fprintf(out, "%s error: %v\n", now.UTC().Format(time.RFC3339), err)
				lastErr = err.Error()
			}
		default:
			lastErr = ""
			if st := jobsState(jobs); st != lastState {
				fmt.Fprintf(out, "%s\n%s\n", now.UTC().Format(time.RFC3339), jobTable(jobs, now))
				lastState = st
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// isoDuration matches the ISO 8601 durations jobs report (PT1H2M3.5S).
var isoDuration = regexp.MustCompile(`^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:([\d.]+)S)?)?$`)

func parseISODuration(s string) (time.Duration, bool) {
	m := isoDuration.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	var d time.Duration
	for i, unit := range []time.Duration{24 * time.Hour, time.Hour, time.Minute} {
		if m[i+1] != "" {
			n, _ := strconv.Atoi(m[i+1])
			d += time.Duration(n) * unit
		}
	}
	if m[4] != "" {
		sec, err := strconv.ParseFloat(m[4], 64)
		if err != nil {
			return 0, false
		}
		d += time.Duration(sec * float64(time.Second))
	}
	return d, true
}

func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

func lastSegment(id string) string {
	if id == "" {
		return "-"
	}
	return id[strings.LastIndex(id, "/")+1:]
}
