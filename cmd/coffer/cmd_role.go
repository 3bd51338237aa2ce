package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/coffer-backup/coffer/internal/rbac"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

const authzVersion = "2022-04-01"

type roleAssignment struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		Scope            string `json:"scope"`
		RoleDefinitionID string `json:"roleDefinitionId"`
		PrincipalID      string `json:"principalId"`
		PrincipalType    string `json:"principalType"`
	} `json:"properties"`
}

func newRoleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Grant, list and remove role assignments (like 'az role assignment')",
	}
	cmd.AddCommand(newRoleAssignCmd(), newRoleListCmd(), newRoleRemoveCmd())
	return cmd
}

// roleDefinitionRef turns a role name or GUID into a role definition id.
func roleDefinitionRef(role string) (string, error) {
	if def, ok := rbac.BuiltInRole(role); ok {
		return "/providers/Microsoft.Authorization/roleDefinitions/" + def.ID, nil
	}
	if _, err := uuid.Parse(role); err == nil {
		return "/providers/Microsoft.Authorization/roleDefinitions/" + role, nil
	}
	if strings.Contains(role, "/roleDefinitions/") {
		return role, nil
	}
	return "", fmt.Errorf("unknown role %q: give a built-in role name (e.g. \"Disk Backup Reader\"), a GUID or a role definition id", role)
}

func newRoleAssignCmd() *cobra.Command {
	var cf clientFlags
	var role, assignee, scope, principalType string
	cmd := &cobra.Command{
		Use:   "assign",
		Short: "Grant a role to a principal at a scope",
		Example: `  coffer role assign --role "Disk Backup Reader" --assignee $VAULT_PRINCIPAL \
      --scope /subscriptions/$SUB/resourceGroups/rg/providers/Microsoft.Compute/disks/disk1 --data-dir ./coffer-data`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := roleDefinitionRef(role)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			scope = "/" + strings.Trim(scope, "/")
			var out roleAssignment
			body := map[string]any{"properties": map[string]string{
				"roleDefinitionId": ref, "principalId": assignee, "principalType": principalType,
			}}
			path := strings.TrimSuffix(scope, "/") + "/providers/Microsoft.Authorization/roleAssignments/" + uuid.NewString()
			if _, err := c.Do(cmd.Context(), http.MethodPut, path, authzVersion, nil, body, &out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.ID)
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "role name or GUID, e.g. \"Disk Snapshot Contributor\" (required)")
	f.StringVar(&assignee, "assignee", "", "principal object id (required)")
	f.StringVar(&scope, "scope", "", "scope: /subscriptions/S[/resourceGroups/G[/providers/…]] (required)")
	f.StringVar(&principalType, "assignee-principal-type", "ServicePrincipal", "User, Group or ServicePrincipal")
	cmd.MarkFlagRequired("role")
	cmd.MarkFlagRequired("assignee")
	cmd.MarkFlagRequired("scope")
	return cmd
}

func newRoleListCmd() *cobra.Command {
	var cf clientFlags
	var assignee, scope string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List role assignments at, above and below a scope",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if assignee != "" {
				q.Set("$filter", "principalId eq '"+assignee+"'")
			}
			path := "/providers/Microsoft.Authorization/roleAssignments"
			if s := strings.Trim(scope, "/"); s != "" {
				path = "/" + s + path
			}
			items, err := armclient.List[roleAssignment](cmd.Context(), c, path, authzVersion, q)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "PRINCIPAL\tROLE\tSCOPE\tNAME")
			for _, a := range items {
				role := a.Properties.RoleDefinitionID[strings.LastIndex(a.Properties.RoleDefinitionID, "/")+1:]
				if def, ok := rbac.BuiltInRole(role); ok {
					role = def.RoleName
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", a.Properties.PrincipalID, role, a.Properties.Scope, a.Name)
			}
			return w.Flush()
		},
	}
	cf.register(cmd)
	cmd.Flags().StringVar(&assignee, "assignee", "", "only this principal's assignments")
	cmd.Flags().StringVar(&scope, "scope", "", "scope to list at (default: everything)")
	return cmd
}

func newRoleRemoveCmd() *cobra.Command {
	var cf clientFlags
	var ids []string
	var role, assignee, scope string
	cmd := &cobra.Command{
		Use:   "remove",
		Short: "Remove role assignments by id, or by role, assignee and scope",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				if role == "" || assignee == "" || scope == "" {
					return fmt.Errorf("give --ids, or all of --role, --assignee and --scope")
				}
				ref, err := roleDefinitionRef(role)
				if err != nil {
					return err
				}
				guid := ref[strings.LastIndex(ref, "/")+1:]
				q := url.Values{"$filter": {"principalId eq '" + assignee + "'"}}
				items, err := armclient.List[roleAssignment](cmd.Context(), c, "/"+strings.Trim(scope, "/")+"/providers/Microsoft.Authorization/roleAssignments", authzVersion, q)
				if err != nil {
					return err
				}
				for _, a := range items {
					if strings.EqualFold(a.Properties.Scope, "/"+strings.Trim(scope, "/")) && strings.HasSuffix(strings.ToLower(a.Properties.RoleDefinitionID), strings.ToLower(guid)) {
						ids = append(ids, a.ID)
					}
				}
				if len(ids) == 0 {
					return fmt.Errorf("no assignment of %q to %s at %s", role, assignee, scope)
				}
			}
			for _, id := range ids {
				if _, err := c.Do(cmd.Context(), http.MethodDelete, id, authzVersion, nil, nil, nil); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "removed", id)
			}
			return nil
		},
	}
	cf.register(cmd)
	f := cmd.Flags()
	f.StringSliceVar(&ids, "ids", nil, "role assignment ids")
	f.StringVar(&role, "role", "", "role name or GUID")
	f.StringVar(&assignee, "assignee", "", "principal object id")
	f.StringVar(&scope, "scope", "", "scope of the assignment")
	return cmd
}
