package rbac

import (
	"testing"

	"github.com/coffer-backup/coffer/internal/errs"
)

func TestParseRoleDefinitionID(t *testing.T) {
	const g = "3e5e47e6-65f7-47ef-90b5-e5dd4d455f24"
	tests := []struct {
		name      string
		in        string
		wantGUID  string
		wantScope string
		wantErr   bool
	}{
		{"tenant form", "/providers/Microsoft.Authorization/roleDefinitions/" + g, g, "/", false},
		{"subscription form", sub + "/providers/Microsoft.Authorization/roleDefinitions/" + g, g, sub, false},
		{"bare GUID", g, g, "", false},
		{"bare GUID upper case", "3E5E47E6-65F7-47EF-90B5-E5DD4D455F24", g, "", false},
		{"tenant form any case", "/PROVIDERS/microsoft.authorization/ROLEDEFINITIONS/3E5E47E6-65F7-47EF-90B5-E5DD4D455F24", g, "/", false},
		{"subscription form any case keeps scope spelling", "/Subscriptions/ABC/providers/Microsoft.Authorization/roledefinitions/" + g, g, "/Subscriptions/ABC", false},
		{"empty", "", "", "", true},
		{"not a GUID", "/providers/Microsoft.Authorization/roleDefinitions/reader", "", "", true},
		{"GUID too short", "3e5e47e6-65f7-47ef-90b5-e5dd4d455f2", "", "", true},
		{"GUID with braces", "{" + g + "}", "", "", true},
		{"GUID with bad hyphens", "3e5e47e665f7-47ef-90b5-e5dd4d455f24-", "", "", true},
		{"GUID with non-hex", "3e5e47e6-65f7-47ef-90b5-e5dd4d455f2g", "", "", true},
		{"role name", "Disk Backup Reader", "", "", true},
		{"trailing segment", "/providers/Microsoft.Authorization/roleDefinitions/" + g + "/x", "", "", true},
		{"trailing slash", "/providers/Microsoft.Authorization/roleDefinitions/" + g + "/", "", "", true},
		{"resource group form", rg + "/providers/Microsoft.Authorization/roleDefinitions/" + g, "", "", true},
		{"no leading slash", "providers/Microsoft.Authorization/roleDefinitions/" + g, "", "", true},
		{"empty subscription", "/subscriptions//providers/Microsoft.Authorization/roleDefinitions/" + g, "", "", true},
		{"other provider", "/providers/Microsoft.Compute/roleDefinitions/" + g, "", "", true},
		{"role assignment id", sub + "/providers/Microsoft.Authorization/roleAssignments/" + g, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			guid, scope, err := ParseRoleDefinitionID(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseRoleDefinitionID(%q) = %q, %q; want an error", tt.in, guid, scope)
				}
				if !errs.Is(err, errs.Invalid) {
					t.Errorf("error kind = %v, want Invalid", errs.KindOf(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRoleDefinitionID(%q): %v", tt.in, err)
			}
			if guid != tt.wantGUID || scope != tt.wantScope {
				t.Errorf("ParseRoleDefinitionID(%q) = %q, %q; want %q, %q", tt.in, guid, scope, tt.wantGUID, tt.wantScope)
			}
		})
	}
}
