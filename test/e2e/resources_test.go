package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
)

var fastPoll = &runtime.PollUntilDoneOptions{Frequency: 200 * time.Millisecond}

// TestResourceGroupsSDK drives resource groups with the official
// armresources client on both metadata stores.
func TestResourceGroupsSDK(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			ctx := context.Background()
			sub := newSubscription()
			cred, opts := s.sdk(s.token())
			groups, err := armresources.NewResourceGroupsClient(sub, cred, opts)
			if err != nil {
				t.Fatal(err)
			}

			created, err := groups.CreateOrUpdate(ctx, "Backups-RG", armresources.ResourceGroup{
				Location: to.Ptr("West US"), Tags: map[string]*string{"team": to.Ptr("storage")},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantID := "/subscriptions/" + sub + "/resourceGroups/Backups-RG"
			if *created.ID != wantID || *created.Location != "westus" || *created.Properties.ProvisioningState != "Succeeded" {
				t.Fatalf("created %+v", created.ResourceGroup)
			}

			// Ids are case-insensitive; the response echoes the canonical casing.
			got, err := groups.Get(ctx, "backups-rg", nil)
			if err != nil {
				t.Fatal(err)
			}
			if *got.ID != wantID || *got.Tags["team"] != "storage" {
				t.Fatalf("get %+v", got.ResourceGroup)
			}
			exists, err := groups.CheckExistence(ctx, "BACKUPS-RG", nil)
			if err != nil || !exists.Success {
				t.Fatalf("CheckExistence = %v, %v", exists.Success, err)
			}
			missing, err := groups.CheckExistence(ctx, "nope", nil)
			if err != nil || missing.Success {
				t.Fatalf("CheckExistence(nope) = %v, %v", missing.Success, err)
			}
			updated, err := groups.Update(ctx, "Backups-RG", armresources.ResourceGroupPatchable{
				Tags: map[string]*string{"team": to.Ptr("backup"), "tier": to.Ptr("gold")},
			}, nil)
			if err != nil || *updated.Tags["tier"] != "gold" {
				t.Fatalf("update: %+v %v", updated, err)
			}
			// PUT on an existing group is 200, and may not move it.
			if _, err := groups.CreateOrUpdate(ctx, "Backups-RG", armresources.ResourceGroup{Location: to.Ptr("eastus")}, nil); !hasCode(err, "InvalidResourceGroupLocation") {
				t.Fatalf("moving a group: %v", err)
			}

			// Listing pages through more than 100 groups.
			const n = 120
			for i := 0; i < n; i++ {
				if _, err := groups.CreateOrUpdate(ctx, fmt.Sprintf("g-%03d", i), armresources.ResourceGroup{Location: to.Ptr("westus")}, nil); err != nil {
					t.Fatal(err)
				}
			}
			pager := groups.NewListPager(nil)
			seen := map[string]bool{}
			pages := 0
			for pager.More() {
				page, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, g := range page.Value {
					if seen[*g.Name] {
						t.Fatalf("%s listed twice", *g.Name)
					}
					seen[*g.Name] = true
				}
			}
			if len(seen) != n+1 || pages < 2 {
				t.Fatalf("listed %d groups in %d pages, want %d in >= 2", len(seen), pages, n+1)
			}
			top := int32(7)
			small, err := groups.NewListPager(&armresources.ResourceGroupsClientListOptions{Top: &top}).NextPage(ctx)
			if err != nil || len(small.Value) != 7 || small.NextLink == nil {
				t.Fatalf("$top=7 page: %d items, next %v, %v", len(small.Value), small.NextLink, err)
			}

			// Another subscription sees none of them.
			other, _ := armresources.NewResourceGroupsClient(newSubscription(), cred, opts)
			page, err := other.NewListPager(nil).NextPage(ctx)
			if err != nil || len(page.Value) != 0 {
				t.Fatalf("other subscription lists %d, %v", len(page.Value), err)
			}

			poller, err := groups.BeginDelete(ctx, "backups-rg", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := poller.PollUntilDone(ctx, fastPoll); err != nil {
				t.Fatal(err)
			}
			if _, err := groups.Get(ctx, "Backups-RG", nil); !hasStatus(err, http.StatusNotFound, "ResourceGroupNotFound") {
				t.Fatalf("get after delete: %v", err)
			}
		})
	}
}

func hasCode(err error, code string) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.ErrorCode == code
}

func hasStatus(err error, status int, code string) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status && re.ErrorCode == code
}
