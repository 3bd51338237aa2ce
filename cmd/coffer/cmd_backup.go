package main

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newBackupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Take backups of protected disks",
		Long: `Backups of a protected disk run on its policy's schedule; 'coffer backup now'
takes one at once. Follow them with 'coffer jobs' and list what they made with
'coffer points'.`,
	}
	cmd.AddCommand(newBackupNowCmd())
	return cmd
}

func newBackupNowCmd() *cobra.Command {
	var cf clientFlags
	var inf instanceFlags
	var tag string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "now BACKUP_INSTANCE",
		Short: "Take an on-demand backup of a protected disk",
		Long: `Take a backup of a protected disk now, outside its policy's schedule: an
incremental snapshot into the instance's snapshot resource group, recorded as
a recovery point.

BACKUP_INSTANCE is the id 'coffer protect' printed, or the instance's name with
--vault (and -g and a subscription when --vault is a name). The backup runs
under the policy's backup rule and is kept as the retention rule
--retention-tag says (the policy's "Default" rule unless you name another).

backup now waits for the backup and prints its job and recovery point; with
--no-wait it returns as soon as the backup has started (follow it with
'coffer jobs --watch'). An instance takes at most 10 on-demand backups a
day.`,
		Example: `  coffer backup now /subscriptions/$SUB/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/backups/backupInstances/db1-4d2c... --data-dir ./coffer-data
  coffer backup now db1-4d2c... --vault backups -g vaults --subscription $SUB --data-dir ./coffer-data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id, err := inf.ref(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			bi, err := loadInstance(ctx, c, id)
			if err != nil {
				return err
			}
			var policy struct {
				Name       string `json:"name"`
				Properties struct {
					PolicyRules []struct {
						ObjectType string `json:"objectType"`
						Name       string `json:"name"`
					} `json:"policyRules"`
				} `json:"properties"`
			}
			if _, err := c.Do(ctx, http.MethodGet, bi.Properties.PolicyInfo.PolicyID, protectionVersion, nil, nil, &policy); err != nil {
				return fmt.Errorf("policy of %s: %w", bi.Name, err)
			}
			rule := ""
			for _, r := range policy.Properties.PolicyRules {
				if strings.EqualFold(r.ObjectType, "AzureBackupRule") {
					rule = r.Name
				}
			}
			if rule == "" {
				return fmt.Errorf("policy %s has no backup rule (AzureBackupRule) to run an on-demand backup under", policy.Name)
			}
			body := map[string]any{"backupRuleOptions": map[string]any{"ruleName": rule,
				"triggerOption": map[string]string{"retentionTagOverride": tag}}}
			resp, err := c.Do(ctx, http.MethodPost, bi.ID+"/backup", protectionVersion, nil, body, nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if noWait {
				fmt.Fprintf(out, "backup of %s started\nfollow it with: coffer jobs --vault %s%s\n",
					bi.Properties.DataSourceInfo.ResourceName, shellQuote(vaultOfInstance(bi.ID)), cf.reuse())
				return nil
			}
			jobID, err := awaitJob(cmd, c, resp, "backing up "+bi.Properties.DataSourceInfo.ResourceName)
			if err != nil {
				return fmt.Errorf("backup of %s: %w", bi.Properties.DataSourceInfo.ResourceName, err)
			}
			var job backupJob
			if _, err := c.Do(ctx, http.MethodGet, jobID, protectionVersion, nil, nil, &job); err != nil {
				return err
			}
			fmt.Fprintf(out, "job: %s\n", job.ID)
			if p := job.Properties.ExtendedInfo.SourceRecoverPoint; p != nil {
				at := ""
				if p.RecoveryPointTime != nil {
					at = p.RecoveryPointTime.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(out, "recovery point: %s\ntime: %s\n", p.RecoveryPointID, at)
			}
			return nil
		},
	}
	cf.register(cmd)
	inf.register(cmd)
	cmd.Flags().StringVar(&tag, "retention-tag", "Default", "retention rule of the policy to keep the backup under")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the backup has started")
	return cmd
}
