package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

func newRestoreCmd() *cobra.Command {
	var cf clientFlags
	var inf instanceFlags
	var point, to string
	var assign bool
	cmd := &cobra.Command{
		Use:   "restore BACKUP_INSTANCE --point RECOVERY_POINT --to NEW_DISK_ID",
		Short: "Restore a recovery point to a new disk",
		Long: `Restore a recovery point of a protected disk to a new managed disk (a disk
restore never overwrites: the target must not exist). The new disk gets the
source's size and SKU at backup time, in the source's region.

BACKUP_INSTANCE is the instance's id, or its name with --vault (and -g and a
subscription when --vault is a name); --point is an id 'coffer points' lists;
--to is the full id of the disk to create, in an existing resource group.

restore first validates the restore. When the vault's identity lacks a role,
it prints which role on which scope, with the 'coffer role assign' command
that grants it, and stops; pass --assign-roles to grant them and go on. The
identity needs Disk Restore Operator on the target resource group and Disk
Snapshot Contributor on the snapshot resource group.

The disk is usable as soon as the restore completes: its blocks are read from
the recovery point until the server has copied them all (hydration), which it
does in the background.`,
		Example: `  coffer restore $BACKUP_INSTANCE_ID --point 5f0c... \
      --to /subscriptions/$SUB/resourceGroups/restored/providers/Microsoft.Compute/disks/db1-restored --data-dir ./coffer-data
  coffer restore db1-4d2c... --vault backups -g vaults --subscription $SUB --point 5f0c... --to $NEW_DISK_ID --assign-roles`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			id, err := inf.ref(args[0])
			if err != nil {
				return err
			}
			if !strings.HasPrefix(to, "/") {
				return fmt.Errorf("--to %q: give the full id of the new disk (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/disks/NAME)", to)
			}
			target, err := (&diskFlags{}).ref(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			bi, err := loadInstance(ctx, c, id)
			if err != nil {
				return err
			}
			var rp recoveryPoint
			if _, err := c.Do(ctx, http.MethodGet, bi.ID+"/recoveryPoints/"+point, protectionVersion, nil, nil, &rp); err != nil {
				return fmt.Errorf("recovery point %s of %s: %w (list them with 'coffer points %s%s')", point, bi.Name, err, shellQuote(bi.ID), cf.reuse())
			}
			var v vaultSummary
			if _, err := c.Do(ctx, http.MethodGet, vaultOfInstance(bi.ID), protectionVersion, nil, nil, &v); err != nil {
				return err
			}
			location := bi.Properties.DataSourceInfo.ResourceLocation
			request := map[string]any{
				"objectType": "AzureBackupRecoveryPointBasedRestoreRequest", "recoveryPointId": rp.Name,
				"sourceDataStoreType": "OperationalStore", "sourceResourceId": bi.Properties.DataSourceInfo.ResourceID,
				"restoreTargetInfo": map[string]any{"objectType": "RestoreTargetInfo", "recoveryOption": "FailIfExists", "restoreLocation": location,
					"datasourceInfo": map[string]string{"objectType": "Datasource", "datasourceType": "Microsoft.Compute/disks",
						"resourceType": "Microsoft.Compute/disks", "resourceID": target.id(), "resourceName": target.name, "resourceLocation": location, "resourceUri": ""}},
			}
			out := cmd.OutOrStdout()
			if err := validateRestore(cmd, &cf, c, bi, v, target, request, assign); err != nil {
				return err
			}
			resp, err := c.Do(ctx, http.MethodPost, bi.ID+"/restore", protectionVersion, nil, request, nil)
			if err != nil {
				return err
			}
			jobID, err := awaitJob(cmd, c, resp, "restoring "+rp.Name+" to "+target.name)
			if err != nil {
				return fmt.Errorf("restore to %s: %w", target.id(), err)
			}
			fmt.Fprintf(out, "job: %s\n", jobID)
			if err := awaitHydration(ctx, cmd, c, target); err != nil {
				return err
			}
			fmt.Fprintf(out, "disk: %s\n", target.id())
			return nil
		},
	}
	cf.register(cmd)
	inf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&point, "point", "", "recovery point id, as 'coffer points' lists it (required)")
	f.StringVar(&to, "to", "", "full id of the new disk (required)")
	f.BoolVar(&assign, "assign-roles", false, "grant the vault identity the missing roles, then go on")
	cmd.MarkFlagRequired("point")
	cmd.MarkFlagRequired("to")
	return cmd
}

// validateRestore runs validateRestore; when the vault identity lacks a
// role it prints the grants (and makes them with assign) like protect.
func validateRestore(cmd *cobra.Command, cf *clientFlags, c *armclient.Client, bi backupInstance, v vaultSummary, target diskRef, request map[string]any, assign bool) error {
	ctx, out := cmd.Context(), cmd.OutOrStdout()
	for attempt := 0; ; attempt++ {
		fmt.Fprintf(out, "validating restore to %s ...\n", target.name)
		resp, err := c.Do(ctx, http.MethodPost, bi.ID+"/validateRestore", protectionVersion, nil, map[string]any{"restoreRequestObject": request}, nil)
		if err != nil {
			return err
		}
		if _, err = awaitStatus(ctx, c, resp); err == nil {
			return nil
		}
		var ae *armclient.Error
		if !asClientError(err, &ae) || ae.Code != "UserErrorMissingRequiredPermissions" || v.Identity == nil {
			return fmt.Errorf("restore to %s: %w", target.id(), err)
		}
		wanted := []missingRole{{diskRestoreOperator, "/subscriptions/" + target.sub + "/resourceGroups/" + target.group}}
		if g := bi.snapshotGroup(); g != "" {
			wanted = append(wanted, missingRole{diskSnapshotContributor, g})
		}
		missing, err := missingRoles(ctx, c, v.Identity.PrincipalID, wanted)
		if err != nil {
			return fmt.Errorf("restore to %s: %w", target.id(), err)
		}
		fmt.Fprintf(out, "the vault's identity %s is missing roles:\n", v.Identity.PrincipalID)
		for _, m := range missing {
			printGrant(out, cf, v.Identity.PrincipalID, m)
		}
		if !assign || attempt > 0 || len(missing) == 0 {
			return fmt.Errorf("the vault cannot restore to %s until those roles are granted (or pass --assign-roles)", target.id())
		}
		for _, m := range missing {
			if err := grantRole(ctx, c, m.role, v.Identity.PrincipalID, m.scope); err != nil {
				return err
			}
			fmt.Fprintf(out, "granted %s on %s\n", m.role, m.scope)
		}
	}
}

// awaitHydration shows the new disk's hydration until it is done, where the
// server reports it as the disk's completionPercent (Azure's progress of a
// background copy). A server that does not report it hydrates just the
// same; the disk is usable either way.
func awaitHydration(ctx context.Context, cmd *cobra.Command, c *armclient.Client, target diskRef) error {
	var d struct {
		Properties struct {
			CompletionPercent *float64 `json:"completionPercent"`
		} `json:"properties"`
	}
	get := func() error {
		_, err := c.Do(ctx, http.MethodGet, target.id(), computeVersion, nil, nil, &d)
		return err
	}
	if err := get(); err != nil {
		return err
	}
	// Said first, whatever the progress: the disk reads and writes from
	// the moment the restore succeeded.
	fmt.Fprintf(cmd.ErrOrStderr(), "%s is usable now; it hydrates from the recovery point in the background\n", target.name)
	if d.Properties.CompletionPercent == nil || *d.Properties.CompletionPercent >= 100 {
		return nil
	}
	bar := progressbar.NewOptions(100,
		progressbar.OptionSetDescription("hydrating "+target.name),
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSetWidth(20),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
	)
	for d.Properties.CompletionPercent != nil && *d.Properties.CompletionPercent < 100 {
		bar.Set(int(*d.Properties.CompletionPercent))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		d.Properties.CompletionPercent = nil
		if err := get(); err != nil {
			return err
		}
	}
	return bar.Finish()
}
