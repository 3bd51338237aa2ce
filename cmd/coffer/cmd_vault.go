package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/spf13/cobra"
)

const protectionVersion = "2026-06-01"

// vaultRef names one Backup vault by id, or by name with a resource group.
func vaultRef(f *diskFlags, arg string) (string, error) {
	if strings.HasPrefix(arg, "/") {
		parts := strings.Split(strings.Trim(arg, "/"), "/")
		if len(parts) != 8 || !strings.EqualFold(parts[6], "backupVaults") {
			return "", fmt.Errorf("%q is not a Backup vault id (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.DataProtection/backupVaults/NAME)", arg)
		}
		return arg, nil
	}
	if f.group == "" {
		return "", fmt.Errorf("vault %q: a vault name needs --resource-group (or give the full vault id)", arg)
	}
	sub, err := f.subscription()
	if err != nil {
		return "", err
	}
	return "/subscriptions/" + sub + "/resourceGroups/" + f.group + "/providers/Microsoft.DataProtection/backupVaults/" + arg, nil
}

// vaultTarget resolves the vault a command names and the client to reach it.
func vaultTarget(cf *clientFlags, df *diskFlags, arg string) (string, *armclient.Client, error) {
	id, err := vaultRef(df, arg)
	if err != nil {
		return "", nil, err
	}
	c, err := cf.client()
	return id, c, err
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printResource GETs the resource id and prints it as printJSON does.
func printResource(cmd *cobra.Command, c *armclient.Client, id, version string) error {
	var v any
	if _, err := c.Do(cmd.Context(), http.MethodGet, id, version, nil, nil, &v); err != nil {
		return err
	}
	return printJSON(cmd, v)
}

func newVaultCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "vault", Short: "Create, show and list Backup vaults"}
	cmd.AddCommand(newVaultCreateCmd(), newVaultShowCmd(), newVaultListCmd())
	return cmd
}

func newVaultCreateCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var location string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a Backup vault with a system-assigned identity",
		Long: `Create a Backup vault (locally redundant, with a system-assigned managed
identity) and print it. Its identity.principalId is the principal to grant
Disk Backup Reader on each disk and Disk Snapshot Contributor on the
snapshot resource group; 'coffer protect' tells you exactly what is missing.`,
		Example: `  coffer vault create backups -g vaults --subscription $SUB --location westus --data-dir ./coffer-data`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := vaultRef(&df, args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			body := map[string]any{"location": location, "identity": map[string]string{"type": "SystemAssigned"},
				"properties": map[string]any{"storageSettings": []map[string]string{{"datastoreType": "VaultStore", "type": "LocallyRedundant"}}}}
			resp, err := c.Do(cmd.Context(), http.MethodPut, id, protectionVersion, nil, body, nil)
			if err != nil {
				return err
			}
			if _, err := awaitStatus(cmd.Context(), c, resp); err != nil {
				return err
			}
			return printResource(cmd, c, id, protectionVersion)
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the vault")
	cmd.Flags().StringVarP(&location, "location", "l", "westus", "region; disks must be in the vault's region")
	return cmd
}

func newVaultShowCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	cmd := &cobra.Command{
		Use:   "show VAULT",
		Short: "Print a Backup vault as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := vaultRef(&df, args[0])
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			return printResource(cmd, c, id, protectionVersion)
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the vault")
	return cmd
}

type vaultSummary struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Location string `json:"location"`
	Identity *struct {
		PrincipalID string `json:"principalId"`
	} `json:"identity"`
	Properties struct {
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

func newVaultListCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List Backup vaults in a subscription or resource group",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sub, err := df.subscription()
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			path := "/subscriptions/" + sub
			if df.group != "" {
				path += "/resourceGroups/" + df.group
			}
			vaults, err := armclient.List[vaultSummary](cmd.Context(), c, path+"/providers/Microsoft.DataProtection/backupVaults", protectionVersion, nil)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tLOCATION\tSTATE\tPRINCIPAL\tID")
			for _, v := range vaults {
				principal := "-"
				if v.Identity != nil && v.Identity.PrincipalID != "" {
					principal = v.Identity.PrincipalID
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", v.Name, v.Location, v.Properties.ProvisioningState, principal, v.ID)
			}
			return w.Flush()
		},
	}
	cf.register(cmd)
	df.register(cmd, "only vaults in this resource group")
	return cmd
}

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Create disk backup policies"}
	cmd.AddCommand(newPolicyCreateCmd())
	return cmd
}

// diskPolicy is a disk backup policy: one schedule, one default retention.
func diskPolicy(interval, retention, start string) map[string]any {
	store := map[string]string{"objectType": "DataStoreInfoBase", "dataStoreType": "OperationalStore"}
	return map[string]any{"properties": map[string]any{
		"objectType": "BackupPolicy", "datasourceTypes": []string{"Microsoft.Compute/disks"},
		"policyRules": []any{
			map[string]any{"objectType": "AzureBackupRule", "name": "BackupHourly",
				"backupParameters": map[string]string{"objectType": "AzureBackupParams", "backupType": "Incremental"},
				"dataStore":        store,
				"trigger": map[string]any{"objectType": "ScheduleBasedTriggerContext",
					"schedule":        map[string]any{"repeatingTimeIntervals": []string{"R/" + start + "/" + interval}, "timeZone": "UTC"},
					"taggingCriteria": []any{map[string]any{"isDefault": true, "taggingPriority": 99, "tagInfo": map[string]string{"tagName": "Default"}}}}},
			map[string]any{"objectType": "AzureRetentionRule", "name": "Default", "isDefault": true,
				"lifecycles": []any{map[string]any{"sourceDataStore": store,
					"deleteAfter":                 map[string]string{"objectType": "AbsoluteDeleteOption", "duration": retention},
					"targetDataStoreCopySettings": []any{}}}},
		}}}
}

func newPolicyCreateCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var vault, interval, retention, start string
	var defaults bool
	cmd := &cobra.Command{
		Use:   "create NAME --vault VAULT (--default-disk | --interval PT4H --retention P7D)",
		Short: "Create a disk backup policy in a vault",
		Long: `Create a disk backup policy. --default-disk gives the service's defaults: a backup
every 4 hours (PT4H) kept for 7 days (P7D). --interval takes PT1H, PT2H, PT4H,
PT6H, PT8H, PT12H or P1D; --retention an ISO 8601 duration up to one year.`,
		Example: `  coffer policy create disk-default --vault backups -g vaults --subscription $SUB --default-disk
  coffer policy create daily --vault $VAULT_ID --interval P1D --retention P30D`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if defaults {
				interval, retention = "PT4H", "P7D"
			}
			if interval == "" || retention == "" {
				return fmt.Errorf("give --default-disk, or both --interval and --retention")
			}
			id, c, err := vaultTarget(&cf, &df, vault)
			if err != nil {
				return err
			}
			var out map[string]any
			if _, err := c.Do(cmd.Context(), http.MethodPut, id+"/backupPolicies/"+args[0], protectionVersion, nil,
				diskPolicy(interval, retention, start), &out); err != nil {
				return err
			}
			return printJSON(cmd, out)
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the vault (when --vault is a name)")
	f := cmd.Flags()
	f.StringVar(&vault, "vault", "", "vault name or id (required)")
	f.BoolVar(&defaults, "default-disk", false, "the service's disk defaults: every 4 hours, kept 7 days")
	f.StringVar(&interval, "interval", "", "backup frequency: PT1H, PT2H, PT4H, PT6H, PT8H, PT12H or P1D")
	f.StringVar(&retention, "retention", "", "how long backups are kept, e.g. P7D (at most one year)")
	f.StringVar(&start, "start", "2021-01-01T00:00:00+00:00", "first scheduled backup time (date-time with offset)")
	cmd.MarkFlagRequired("vault")
	return cmd
}
