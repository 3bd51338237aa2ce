// Package groups is the resource group as the rest of coffer sees it: the
// stored row, its id, and the checks a resource makes of the group it is
// created in. The ARM endpoints of resource groups are served by
// internal/provider/resources; engines and other providers read groups
// through this package, never through that provider.
package groups

import (
	"context"
	"encoding/json"

	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/google/uuid"
)

// Type is the ARM type of a resource group.
const Type = "Microsoft.Resources/resourceGroups"

// StateDeleting is the provisioning state of a group whose delete runs.
const StateDeleting = "Deleting"

// Group is a resource group as stored, which is also its wire form.
type Group struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	ManagedBy  string            `json:"managedBy,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Properties Properties        `json:"properties"`
}

// Properties are a group's properties.
type Properties struct {
	ProvisioningState string `json:"provisioningState"`
}

// ID is the canonical id of a resource group.
func ID(sub, name string) string {
	return "/subscriptions/" + sub + "/resourceGroups/" + name
}

// CheckSubscription validates a subscription id: any GUID names a
// subscription on a self-hosted server.
func CheckSubscription(sub string) error {
	if _, err := uuid.Parse(sub); err != nil || len(sub) != 36 {
		return errs.E(errs.Invalid, "InvalidSubscriptionId",
			"The provided subscription identifier '%s' is malformed or invalid.", sub).WithTarget("subscriptionId")
	}
	return nil
}

// NotFound is the error for a missing resource group.
func NotFound(name string) error {
	return errs.E(errs.NotFound, "ResourceGroupNotFound", "Resource group '%s' could not be found.", name)
}

// Get returns a resource group, or ResourceGroupNotFound.
func Get(ctx context.Context, tx meta.Tx, sub, name string) (Group, error) {
	res, err := tx.GetResource(ctx, ID(sub, name))
	if errs.Is(err, errs.NotFound) {
		return Group{}, NotFound(name)
	}
	if err != nil {
		return Group{}, err
	}
	var g Group
	if err := json.Unmarshal(res.Body, &g); err != nil {
		return Group{}, err
	}
	return g, nil
}

// RequireActive is Get that also refuses a group being deleted: nothing
// new may be created in it.
func RequireActive(ctx context.Context, tx meta.Tx, sub, name string) (Group, error) {
	g, err := Get(ctx, tx, sub, name)
	if err == nil && g.Properties.ProvisioningState == StateDeleting {
		return g, errs.E(errs.Conflict, "ResourceGroupBeingDeleted",
			"The resource group '%s' is in deprovisioning state and cannot perform this operation.", g.Name)
	}
	return g, err
}
