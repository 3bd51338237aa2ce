package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/spf13/cobra"
)

func newPointsCmd() *cobra.Command {
	var cf clientFlags
	var inf instanceFlags
	cmd := &cobra.Command{
		Use:   "points BACKUP_INSTANCE",
		Short: "List a protected disk's recovery points",
		Long: `List the recovery points of a backup instance, oldest first: when each was
taken, its id (what 'coffer restore --point' takes), the retention rule that
keeps it and when it expires.

BACKUP_INSTANCE is the instance's id, or its name with --vault (and -g and a
subscription when --vault is a name).`,
		Example: `  coffer points /subscriptions/$SUB/resourceGroups/vaults/providers/Microsoft.DataProtection/backupVaults/backups/backupInstances/db1-4d2c... --data-dir ./coffer-data
  coffer points db1-4d2c... --vault backups -g vaults --subscription $SUB --data-dir ./coffer-data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := inf.ref(args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			bi, err := loadInstance(cmd.Context(), c, id)
			if err != nil {
				return err
			}
			points, err := armclient.List[recoveryPoint](cmd.Context(), c, bi.ID+"/recoveryPoints", protectionVersion, nil)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "TIME (UTC)\tID\tTAG\tEXPIRES (UTC)")
			for _, p := range points {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", p.Properties.RecoveryPointTime.UTC().Format(time.RFC3339),
					p.Name, p.Properties.RetentionTagName, p.Properties.ExpiryTime.UTC().Format(time.RFC3339))
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(points) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "(no recovery points yet: take one with 'coffer backup now %s%s')\n", shellQuote(bi.ID), cf.reuse())
			}
			return nil
		},
	}
	cf.register(cmd)
	inf.register(cmd)
	return cmd
}
