package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// operationStatus is the part of a status monitor the CLI reads.
type operationStatus struct {
	Status string `json:"status"`
	// Properties name the job of a backup or restore operation.
	Properties *struct {
		JobID string `json:"jobId"`
	} `json:"properties"`
	Error *struct {
		Code           string `json:"code"`
		Message        string `json:"message"`
		AdditionalInfo []struct {
			Info struct {
				InnerError *struct {
					AdditionalInfo map[string]string `json:"additionalInfo"`
				} `json:"innerError"`
			} `json:"info"`
		} `json:"additionalInfo"`
	} `json:"error"`
}

// awaitStatus follows a long-running operation's Azure-AsyncOperation
// monitor until it ends and returns the final status. A failed operation
// is returned with an error; a response without a monitor was final.
func awaitStatus(ctx context.Context, c *armclient.Client, resp *http.Response) (operationStatus, error) {
	monitor := resp.Header.Get("Azure-AsyncOperation")
	if monitor == "" {
		return operationStatus{Status: "Succeeded"}, nil
	}
	for {
		var st operationStatus
		if _, err := c.DoURL(ctx, http.MethodGet, monitor, nil, &st); err != nil {
			return st, err
		}
		switch strings.ToLower(st.Status) {
		case "succeeded":
			return st, nil
		case "failed", "canceled":
			if st.Error != nil {
				return st, &armclient.Error{Status: http.StatusOK, Code: st.Error.Code, Message: st.Error.Message}
			}
			return st, fmt.Errorf("operation %s", st.Status)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Roles the vault identity needs, and what they are needed for.
const (
	diskBackupReader        = "Disk Backup Reader"
	diskSnapshotContributor = "Disk Snapshot Contributor"
	diskRestoreOperator     = "Disk Restore Operator"
)

func newProtectCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var vault, policy, snapshotRG, name string
	var assign bool
	cmd := &cobra.Command{
		Use:   "protect DISK --vault VAULT --policy POLICY --snapshot-rg RESOURCE_GROUP_ID",
		Short: "Validate and configure backup of a disk",
		Long: `Protect a managed disk with a Backup vault and policy, the way the REST flow does:
validateForBackup first, then the backup instance.

When the vault's identity lacks a role, protect prints which role on which
scope, with the 'coffer role assign' command that grants it, and stops; pass
--assign-roles to grant them and go on. The identity needs Disk Backup Reader
on the disk and Disk Snapshot Contributor on the snapshot resource group.`,
		Example: `  coffer protect /subscriptions/$SUB/resourceGroups/disks/providers/Microsoft.Compute/disks/db1 \
      --vault backups -g vaults --policy disk-default \
      --snapshot-rg /subscriptions/$SUB/resourceGroups/snapshots --data-dir ./coffer-data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			diskID, err := df.ref(args[0])
			if err != nil {
				return err
			}
			vaultID, err := vaultRef(&df, vault)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			var v vaultSummary
			if _, err := c.Do(ctx, http.MethodGet, vaultID, protectionVersion, nil, nil, &v); err != nil {
				return err
			}
			if v.Identity == nil || v.Identity.PrincipalID == "" {
				return fmt.Errorf("vault %s has no system-assigned identity; recreate it with 'coffer vault create'", v.Name)
			}
			var d disk
			if _, err := c.Do(ctx, http.MethodGet, diskID.id(), computeVersion, nil, nil, &d); err != nil {
				return err
			}
			policyID := policy
			if !strings.HasPrefix(policy, "/") {
				policyID = vaultID + "/backupPolicies/" + policy
			}
			snapshotRG = "/" + strings.Trim(snapshotRG, "/")
			instance := map[string]any{
				"objectType": "BackupInstance",
				"dataSourceInfo": map[string]string{"objectType": "Datasource", "datasourceType": "Microsoft.Compute/disks",
					"resourceType": "Microsoft.Compute/disks", "resourceID": d.ID, "resourceName": d.Name, "resourceLocation": d.Location, "resourceUri": ""},
				"policyInfo": map[string]any{"policyId": policyID, "policyParameters": map[string]any{"dataStoreParametersList": []map[string]string{{
					"objectType": "AzureOperationalStoreParameters", "dataStoreType": "OperationalStore", "resourceGroupId": snapshotRG}}}},
			}
			out := cmd.OutOrStdout()
			for attempt := 0; ; attempt++ {
				fmt.Fprintf(out, "validating backup of %s ...\n", d.Name)
				resp, err := c.Do(ctx, http.MethodPost, vaultID+"/validateForBackup", protectionVersion, nil, map[string]any{"backupInstance": instance}, nil)
				if err != nil {
					return err
				}
				if _, err = awaitStatus(ctx, c, resp); err == nil {
					break
				}
				var ae *armclient.Error
				if !asClientError(err, &ae) || ae.Code != "UserErrorMissingRequiredPermissions" {
					return err
				}
				missing, err := missingRoles(ctx, c, v.Identity.PrincipalID, []missingRole{{diskBackupReader, d.ID}, {diskSnapshotContributor, snapshotRG}})
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "the vault's identity %s is missing roles:\n", v.Identity.PrincipalID)
				for _, m := range missing {
					printGrant(out, &cf, v.Identity.PrincipalID, m)
				}
				if !assign || attempt > 0 || len(missing) == 0 {
					return fmt.Errorf("the vault cannot back up %s until those roles are granted (or pass --assign-roles)", d.Name)
				}
				for _, m := range missing {
					if err := grantRole(ctx, c, m.role, v.Identity.PrincipalID, m.scope); err != nil {
						return err
					}
					fmt.Fprintf(out, "granted %s on %s\n", m.role, m.scope)
				}
			}
			if name == "" {
				name = d.Name + "-" + uuid.NewString()
			}
			fmt.Fprintf(out, "configuring protection as backup instance %s ...\n", name)
			resp, err := c.Do(ctx, http.MethodPut, vaultID+"/backupInstances/"+name, protectionVersion, nil, map[string]any{"properties": instance}, nil)
			if err != nil {
				return err
			}
			if _, err := awaitStatus(ctx, c, resp); err != nil {
				return err
			}
			var bi struct {
				ID         string `json:"id"`
				Properties struct {
					CurrentProtectionState string `json:"currentProtectionState"`
				} `json:"properties"`
			}
			if _, err := c.Do(ctx, http.MethodGet, vaultID+"/backupInstances/"+name, protectionVersion, nil, nil, &bi); err != nil {
				return err
			}
			fmt.Fprintf(out, "%s\t%s\n", bi.Properties.CurrentProtectionState, bi.ID)
			return nil
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the vault (when --vault is a name); the disk's too when DISK is a name")
	f := cmd.Flags()
	f.StringVar(&vault, "vault", "", "vault name or id (required)")
	f.StringVar(&policy, "policy", "", "policy name in the vault, or its id (required)")
	f.StringVar(&snapshotRG, "snapshot-rg", "", "id of the resource group that will hold the snapshots (required)")
	f.StringVar(&name, "name", "", "backup instance name (default: DISKNAME-GUID)")
	f.BoolVar(&assign, "assign-roles", false, "grant the vault identity the missing roles, then go on")
	for _, r := range []string{"vault", "policy", "snapshot-rg"} {
		cmd.MarkFlagRequired(r)
	}
	return cmd
}

func asClientError(err error, target **armclient.Error) bool {
	e, ok := err.(*armclient.Error)
	if ok {
		*target = e
	}
	return ok
}

type missingRole struct{ role, scope string }

// printGrant prints the missing role m and the command that grants it to
// principal, with the connection flags this command was given.
func printGrant(out io.Writer, cf *clientFlags, principal string, m missingRole) {
	fmt.Fprintf(out, "  %s on %s\n    coffer role assign --role %s --assignee %s --scope %s%s\n",
		m.role, m.scope, shellQuote(m.role), shellQuote(principal), shellQuote(m.scope), cf.reuse())
}

// missingRoles lists which of the roles wanted the principal lacks at (or
// above) their scopes.
func missingRoles(ctx context.Context, c *armclient.Client, principal string, wanted []missingRole) ([]missingRole, error) {
	var out []missingRole
	for _, want := range wanted {
		ref, _ := roleDefinitionRef(want.role)
		guid := ref[strings.LastIndex(ref, "/")+1:]
		q := url.Values{"$filter": {"atScope() and principalId eq '" + principal + "'"}}
		items, err := armclient.List[roleAssignment](ctx, c, want.scope+"/providers/Microsoft.Authorization/roleAssignments", authzVersion, q)
		if err != nil {
			return nil, err
		}
		found := false
		for _, a := range items {
			if strings.HasSuffix(strings.ToLower(a.Properties.RoleDefinitionID), guid) {
				found = true
			}
		}
		if !found {
			out = append(out, want)
		}
	}
	return out, nil
}

func grantRole(ctx context.Context, c *armclient.Client, role, principal, scope string) error {
	ref, err := roleDefinitionRef(role)
	if err != nil {
		return err
	}
	body := map[string]any{"properties": map[string]string{"roleDefinitionId": ref, "principalId": principal, "principalType": "ServicePrincipal"}}
	_, err = c.Do(ctx, http.MethodPut, scope+"/providers/Microsoft.Authorization/roleAssignments/"+uuid.NewString(), authzVersion, nil, body, nil)
	return err
}
