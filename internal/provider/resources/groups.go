package resources

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/coffer-backup/coffer/internal/arm"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/errs"
	"github.com/coffer-backup/coffer/internal/groups"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/ops"
	"github.com/google/uuid"
)

// Versions are the Microsoft.Resources api-versions served for resource
// groups: every version of the resources swagger Azure publishes.
var Versions = arm.APIVersions{Provider: "Microsoft.Resources", Versions: []string{
	"2015-11-01", "2016-02-01", "2016-07-01", "2016-09-01", "2017-05-10", "2018-02-01", "2018-05-01",
	"2019-03-01", "2019-05-01", "2019-05-10", "2019-07-01", "2019-08-01", "2019-10-01", "2020-06-01",
	"2020-08-01", "2020-10-01", "2021-01-01", "2021-04-01", "2022-09-01", "2023-07-01", "2024-03-01",
	"2024-07-01", "2024-11-01", "2025-03-01", "2025-04-01",
}}

// GroupType is the ARM type of a resource group.
const GroupType = groups.Type

const deleteGroupKind = "resources.deleteGroup"

// Cascade deletes what a provider keeps inside a resource group before the
// group's rows go (volumes on disk, chunk references...). It must be
// idempotent: a crashed delete runs it again.
type Cascade interface {
	DeleteGroupContents(ctx context.Context, groupID string) error
}

// Service serves resource groups.
type Service struct {
	Store    meta.Store
	Ops      *ops.Runner
	Clock    clock.Clock
	Cascades []Cascade
	// Guards may refuse a group's delete (it holds what must not go).
	Guards []Guard
}

// Guard refuses deleting a resource group whose contents must stay, with
// the error that says why; nil lets the delete go on.
type Guard interface {
	HoldsUnder(ctx context.Context, groupID string) error
}

// Routes registers the resource group operations.
func (s *Service) Routes(r *arm.Router) {
	const group = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
	const read = "Microsoft.Resources/subscriptions/resourceGroups/read"
	const write = "Microsoft.Resources/subscriptions/resourceGroups/write"
	r.Handle(arm.Route{Method: http.MethodPut, Pattern: group, Versions: Versions, Action: write, Handler: s.put})
	r.Handle(arm.Route{Method: http.MethodGet, Pattern: group, Versions: Versions, Action: read, Handler: s.get})
	r.Handle(arm.Route{Method: http.MethodHead, Pattern: group, Versions: Versions, Action: read, Handler: s.head})
	r.Handle(arm.Route{Method: http.MethodPatch, Pattern: group, Versions: Versions, Action: write, Handler: s.patch})
	r.Handle(arm.Route{Method: http.MethodDelete, Pattern: group, Versions: Versions,
		Action: "Microsoft.Resources/subscriptions/resourceGroups/delete", Handler: s.delete})
	r.Handle(arm.Route{Method: http.MethodGet, Pattern: "/subscriptions/{subscriptionId}/resourceGroups",
		Versions: Versions, Action: read, Handler: s.list})
	r.Handle(arm.Route{Method: http.MethodGet, Pattern: "/subscriptions/{subscriptionId}/operationresults/{operationId}",
		Versions: Versions, Action: read, Handler: s.operationResult})
	s.Ops.Register(deleteGroupKind, s.runDelete)
}

var groupName = regexp.MustCompile(`^[-\w._()]{1,90}$`)

func checkGroupName(name string) error {
	if !groupName.MatchString(name) || strings.HasSuffix(name, ".") {
		return errs.E(errs.Invalid, "InvalidResourceGroup",
			"The provided resource group name '%s' has these invalid characters or length: resource group names are 1-90 letters, digits, '_', '-', '.', '(' or ')', and do not end with '.'.", name).WithTarget("resourceGroupName")
	}
	return nil
}

type groupInput struct {
	Location  *string            `json:"location"`
	ManagedBy *string            `json:"managedBy"`
	Tags      *map[string]string `json:"tags"`
}

func (s *Service) put(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, name := r.Param("subscriptionId"), r.Param("resourceGroupName")
	if err := groups.CheckSubscription(sub); err != nil {
		return nil, err
	}
	if err := checkGroupName(name); err != nil {
		return nil, err
	}
	var in groupInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckLocation(in.Location); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	var out groups.Group
	created := false
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		existing, err := groups.Get(ctx, tx, sub, name)
		switch {
		case err == nil:
			if existing.Properties.ProvisioningState == groups.StateDeleting {
				return errs.E(errs.Conflict, "ResourceGroupBeingDeleted",
					"The resource group '%s' is in deprovisioning state and cannot perform this operation.", existing.Name)
			}
			if !sameLocation(existing.Location, *in.Location) {
				return errs.E(errs.Conflict, "InvalidResourceGroupLocation",
					"Invalid resource group location '%s'. The Resource group already exists in location '%s'.", *in.Location, existing.Location)
			}
			out = existing
			out.Tags = nil
		case errs.Is(err, errs.NotFound):
			out = groups.Group{ID: groups.ID(sub, name), Name: name, Type: GroupType, Location: normalizeLocation(*in.Location)}
		default:
			return err
		}
		if in.Tags != nil {
			out.Tags = *in.Tags
		}
		if in.ManagedBy != nil {
			out.ManagedBy = *in.ManagedBy
		}
		out.Properties.ProvisioningState = "Succeeded"
		created, err = s.save(ctx, tx, out)
		return err
	})
	if err != nil {
		return nil, err
	}
	if created {
		return arm.Created(out), nil
	}
	return arm.OK(out), nil
}

func (s *Service) save(ctx context.Context, tx meta.Tx, g groups.Group) (bool, error) {
	body, err := json.Marshal(g)
	if err != nil {
		return false, err
	}
	return tx.PutResource(ctx, meta.Resource{
		ID: g.ID, Type: GroupType, Name: g.Name, Subscription: subscriptionOf(g.ID),
		Parent: "/subscriptions/" + subscriptionOf(g.ID), Body: body, ETag: uuid.NewString(), UpdatedAt: s.Clock.Now(),
	})
}

func subscriptionOf(id string) string {
	parts := strings.Split(id, "/")
	if len(parts) > 2 {
		return parts[2]
	}
	return ""
}

func normalizeLocation(l string) string { return arm.NormalizeLocation(l) }

func sameLocation(a, b string) bool { return normalizeLocation(a) == normalizeLocation(b) }

func (s *Service) get(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	g, err := groups.Get(ctx, s.Store, r.Param("subscriptionId"), r.Param("resourceGroupName"))
	if err != nil {
		return nil, err
	}
	return arm.OK(g), nil
}

func (s *Service) head(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	if _, err := groups.Get(ctx, s.Store, r.Param("subscriptionId"), r.Param("resourceGroupName")); err != nil {
		if errs.Is(err, errs.NotFound) {
			return &arm.Response{Status: http.StatusNotFound}, nil
		}
		return nil, err
	}
	return arm.NoContent(), nil
}

func (s *Service) patch(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	var in groupInput
	if err := r.Decode(&in); err != nil {
		return nil, err
	}
	if err := arm.CheckTags(in.Tags); err != nil {
		return nil, err
	}
	var out groups.Group
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		g, err := groups.RequireActive(ctx, tx, r.Param("subscriptionId"), r.Param("resourceGroupName"))
		if err != nil {
			return err
		}
		if in.Location != nil && !sameLocation(*in.Location, g.Location) {
			return errs.E(errs.Invalid, "InvalidResourceGroupLocation", "The location of a resource group cannot change.").WithTarget("location")
		}
		if in.Tags != nil {
			g.Tags = *in.Tags
		}
		if in.ManagedBy != nil {
			g.ManagedBy = *in.ManagedBy
		}
		out = g
		_, err = s.save(ctx, tx, g)
		return err
	})
	if err != nil {
		return nil, err
	}
	return arm.OK(out), nil
}

func (s *Service) list(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub := r.Param("subscriptionId")
	if err := groups.CheckSubscription(sub); err != nil {
		return nil, err
	}
	if f := r.Query("$filter"); f != "" {
		return nil, errs.E(errs.Invalid, "InvalidFilter", "The $filter '%s' is not supported on resource group lists.", f).WithTarget("$filter")
	}
	after, limit, err := r.PageArgs()
	if err != nil {
		return nil, err
	}
	page, err := s.Store.ListResources(ctx, meta.Query{Type: GroupType, Subscription: sub, After: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	groups := make([]json.RawMessage, len(page.Items))
	for i, res := range page.Items {
		groups[i] = res.Body
	}
	return arm.List(r, groups, page.Next), nil
}

func (s *Service) delete(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	sub, name := r.Param("subscriptionId"), r.Param("resourceGroupName")
	var op meta.Operation
	err := s.Store.InTx(ctx, func(tx meta.Tx) error {
		g, err := groups.Get(ctx, tx, sub, name)
		if err != nil {
			return err
		}
		for _, guard := range s.Guards {
			if err := guard.HoldsUnder(ctx, g.ID); err != nil {
				return err
			}
		}
		if g.Properties.ProvisioningState != groups.StateDeleting {
			g.Properties.ProvisioningState = groups.StateDeleting
			if _, err := s.save(ctx, tx, g); err != nil {
				return err
			}
		}
		op, err = s.Ops.Enqueue(ctx, tx, deleteGroupKind, g.ID, deleteInput{GroupID: g.ID})
		return err
	})
	if errs.Is(err, errs.NotFound) {
		// Deleting what is not there succeeds, as in ARM.
		return arm.NoContent(), nil
	}
	if err != nil {
		return nil, err
	}
	s.Ops.Wake()
	loc := r.Link("/subscriptions/" + sub + "/operationresults/" + op.ID)
	return arm.Accepted(http.StatusAccepted, nil, "", loc, 1), nil
}

type deleteInput struct {
	GroupID string `json:"groupId"`
}

func (s *Service) runDelete(ctx context.Context, op meta.Operation) (any, error) {
	var in deleteInput
	if err := json.Unmarshal(op.Input, &in); err != nil {
		return nil, err
	}
	for _, c := range s.Cascades {
		if err := c.DeleteGroupContents(ctx, in.GroupID); err != nil {
			return nil, err
		}
	}
	_, err := s.Store.DeleteTree(ctx, in.GroupID)
	return nil, err
}

func (s *Service) operationResult(ctx context.Context, r *arm.Request) (*arm.Response, error) {
	op, err := s.Store.GetOperation(ctx, r.Param("operationId"))
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(subscriptionOf(op.ResourceID), r.Param("subscriptionId")) {
		return nil, errs.E(errs.NotFound, "OperationNotFound", "The operation '%s' was not found.", op.ID)
	}
	switch op.Status {
	case meta.StatusInProgress:
		return arm.Accepted(http.StatusAccepted, nil, "", r.Link(r.Canonical), 1), nil
	case meta.StatusSucceeded:
		return arm.OK(nil), nil
	default:
		return nil, ops.DecodeError(op.Error)
	}
}
