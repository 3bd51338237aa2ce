// Command coffer is a self-hosted Azure Disk Backup: an Azure Resource
// Manager compatible control plane over real disks and incremental,
// deduplicated backups. Run `coffer serve` to start it and `coffer --help` to
// see the rest.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "coffer:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "coffer",
		Short: "Self-hosted Azure Disk Backup with an ARM-compatible API",
		Long: `coffer runs Azure Disk Backup on your own machines. Its control plane speaks the
Azure Resource Manager REST API (resource groups, managed disks and snapshots,
role assignments, backup vaults, policies and instances), so the official Azure
SDKs and scripts work against it unchanged.

Start a server with embedded defaults (SQLite, local blobs, self-signed TLS):

  coffer serve --data-dir ./coffer-data

Then, in another shell, act as the bootstrap administrator:

  export COFFER_TOKEN=$(coffer token --data-dir ./coffer-data)
  coffer role list --data-dir ./coffer-data`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newServeCmd(), newTokenCmd(), newRoleCmd(), newVaultCmd(), newPolicyCmd(), newProtectCmd(), newBackupCmd(), newJobsCmd(), newPointsCmd(), newRestoreCmd(),
		newDiskCmd(), newVerifyCmd())
	return root
}
