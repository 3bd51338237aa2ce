package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/spf13/cobra"
)

const computeVersion = "2025-01-02"

// disk is the part of a disk's wire form the CLI reads.
type disk struct {
	ID         string                `json:"id"`
	Name       string                `json:"name"`
	Location   string                `json:"location"`
	SKU        struct{ Name string } `json:"sku"`
	Properties struct {
		DiskSizeGB        int64  `json:"diskSizeGB"`
		DiskSizeBytes     int64  `json:"diskSizeBytes"`
		DiskState         string `json:"diskState"`
		ProvisioningState string `json:"provisioningState"`
	} `json:"properties"`
}

// diskRef names one disk.
type diskRef struct{ sub, group, name string }

func (d diskRef) id() string {
	return "/subscriptions/" + d.sub + "/resourceGroups/" + d.group + "/providers/Microsoft.Compute/disks/" + d.name
}

// diskFlags are the flags that name a disk or its scope.
type diskFlags struct{ sub, group string }

func (f *diskFlags) register(cmd *cobra.Command, groupHelp string) {
	cmd.Flags().StringVar(&f.sub, "subscription", "", "subscription id (or COFFER_SUBSCRIPTION)")
	cmd.Flags().StringVarP(&f.group, "resource-group", "g", "", groupHelp)
}

func (f *diskFlags) subscription() (string, error) {
	if f.sub != "" {
		return f.sub, nil
	}
	if s := os.Getenv("COFFER_SUBSCRIPTION"); s != "" {
		return s, nil
	}
	return "", fmt.Errorf("no subscription: pass --subscription, set COFFER_SUBSCRIPTION, or give the full disk id")
}

// ref turns a full disk id, or a name with --resource-group and a
// subscription, into a diskRef.
func (f *diskFlags) ref(arg string) (diskRef, error) {
	if strings.HasPrefix(arg, "/") {
		parts := strings.Split(strings.Trim(arg, "/"), "/")
		if len(parts) != 8 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") ||
			!strings.EqualFold(parts[4], "providers") || !strings.EqualFold(parts[5], "Microsoft.Compute") || !strings.EqualFold(parts[6], "disks") {
			return diskRef{}, fmt.Errorf("%q is not a disk id (/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/disks/NAME)", arg)
		}
		return diskRef{sub: parts[1], group: parts[3], name: parts[7]}, nil
	}
	if f.group == "" {
		return diskRef{}, fmt.Errorf("disk %q: a disk name needs --resource-group (or give the full disk id)", arg)
	}
	sub, err := f.subscription()
	if err != nil {
		return diskRef{}, err
	}
	return diskRef{sub: sub, group: f.group, name: arg}, nil
}

func newDiskCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "disk",
		Short: "Create, import, export and manage managed disks (like 'az disk')",
		Long: `Managed disks are Microsoft.Compute/disks resources whose bytes live on the
coffer server. Import a raw image into a new disk, export a disk to a sparse
raw file, or create, show, list and delete disks.

A disk is named by its full id, or by its name with --resource-group and a
subscription (--subscription or COFFER_SUBSCRIPTION).`,
		Example: `  export COFFER_SUBSCRIPTION=$(uuidgen)
  coffer disk import ./vm.raw -g rg --name vm-os --data-dir ./coffer-data
  coffer disk export /subscriptions/$COFFER_SUBSCRIPTION/resourceGroups/rg/providers/Microsoft.Compute/disks/vm-os ./copy.raw --data-dir ./coffer-data`,
	}
	cmd.AddCommand(newDiskImportCmd(), newDiskExportCmd(), newDiskCreateCmd(), newDiskShowCmd(), newDiskListCmd(), newDiskDeleteCmd(),
		newDiskAttachCmd(), newDiskDetachCmd())
	return cmd
}

func newDiskCreateCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var name, location, sku string
	var sizeGB int64
	cmd := &cobra.Command{
		Use:     "create --resource-group RG --name NAME --size-gb N",
		Short:   "Create an empty disk",
		Example: `  coffer disk create -g rg --name data-1 --size-gb 64 --subscription $SUB --data-dir ./coffer-data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := df.ref(name)
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			body := map[string]any{"location": location, "sku": map[string]string{"name": sku},
				"properties": map[string]any{"creationData": map[string]string{"createOption": "Empty"}, "diskSizeGB": sizeGB}}
			d, err := putDisk(cmd.Context(), c, ref, body)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), d.ID)
			return nil
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the disk (required)")
	cmd.Flags().StringVar(&name, "name", "", "disk name (required)")
	cmd.Flags().Int64Var(&sizeGB, "size-gb", 0, "size in GiB, 1 to 32767 (required)")
	cmd.Flags().StringVar(&location, "location", "westus", "location of the disk")
	cmd.Flags().StringVar(&sku, "sku", "Standard_LRS", "storage type: Standard_LRS, StandardSSD_LRS, Premium_LRS, ...")
	cmd.MarkFlagRequired("resource-group")
	cmd.MarkFlagRequired("name")
	cmd.MarkFlagRequired("size-gb")
	return cmd
}

func newDiskShowCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	cmd := &cobra.Command{
		Use:   "show DISK_ID | NAME -g RG",
		Short: "Show a disk as JSON",
		Example: `  coffer disk show /subscriptions/$SUB/resourceGroups/rg/providers/Microsoft.Compute/disks/data-1 --data-dir ./coffer-data
  coffer disk show data-1 -g rg --subscription $SUB --data-dir ./coffer-data`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, c, err := diskTarget(&cf, &df, args[0])
			if err != nil {
				return err
			}
			return printResource(cmd, c, ref.id(), computeVersion)
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group, when DISK is a name")
	return cmd
}

func newDiskListCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the disks of a subscription or of one resource group",
		Example: `  coffer disk list --subscription $SUB -g rg --data-dir ./coffer-data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sub, err := df.subscription()
			if err != nil {
				return err
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			path := "/subscriptions/" + sub + "/providers/Microsoft.Compute/disks"
			if df.group != "" {
				path = "/subscriptions/" + sub + "/resourceGroups/" + df.group + "/providers/Microsoft.Compute/disks"
			}
			disks, err := armclient.List[disk](cmd.Context(), c, path, computeVersion, nil)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tRESOURCE GROUP\tSIZE (GiB)\tSTATE\tSKU\tLOCATION")
			for _, d := range disks {
				group := ""
				if parts := strings.Split(d.ID, "/"); len(parts) > 4 {
					group = parts[4]
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\n", d.Name, group, d.Properties.DiskSizeGB, d.Properties.DiskState, d.SKU.Name, d.Location)
			}
			return w.Flush()
		},
	}
	cf.register(cmd)
	df.register(cmd, "only this resource group's disks")
	return cmd
}

func newDiskDeleteCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	cmd := &cobra.Command{
		Use:   "delete DISK_ID | NAME -g RG",
		Short: "Delete a disk and its bytes",
		Long: `Delete a disk and its bytes. A disk with an active SAS is refused: run
'coffer disk export' to the end or revoke the access first.`,
		Example: `  coffer disk delete data-1 -g rg --subscription $SUB --data-dir ./coffer-data`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, c, err := diskTarget(&cf, &df, args[0])
			if err != nil {
				return err
			}
			resp, err := c.Do(cmd.Context(), http.MethodDelete, ref.id(), computeVersion, nil, nil, nil)
			if err != nil {
				return err
			}
			return await(cmd.Context(), c, resp)
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group, when DISK is a name")
	return cmd
}

// putDisk creates or updates a disk and waits until it is provisioned.
func putDisk(ctx context.Context, c *armclient.Client, ref diskRef, body any) (disk, error) {
	resp, err := c.Do(ctx, http.MethodPut, ref.id(), computeVersion, nil, body, nil)
	if err != nil {
		return disk{}, err
	}
	if err := await(ctx, c, resp); err != nil {
		return disk{}, err
	}
	var d disk
	_, err = c.Do(ctx, http.MethodGet, ref.id(), computeVersion, nil, nil, &d)
	return d, err
}

// await follows a long-running operation's Azure-AsyncOperation monitor
// until it ends; a response without one was already final.
func await(ctx context.Context, c *armclient.Client, resp *http.Response) error {
	_, err := awaitStatus(ctx, c, resp)
	return err
}

// grantAccess asks for a SAS on the disk and returns its URL.
func grantAccess(ctx context.Context, c *armclient.Client, ref diskRef, access string, d time.Duration) (string, error) {
	var out struct {
		AccessSAS string `json:"accessSAS"`
	}
	body := map[string]any{"access": access, "durationInSeconds": int64(d / time.Second)}
	resp, err := c.Do(ctx, http.MethodPost, ref.id()+"/beginGetAccess", computeVersion, nil, body, &out)
	if err != nil {
		return "", err
	}
	if out.AccessSAS == "" {
		if err := await(ctx, c, resp); err != nil {
			return "", err
		}
		loc := resp.Header.Get("Location")
		if loc == "" {
			return "", fmt.Errorf("beginGetAccess answered %d with neither a SAS nor a Location", resp.StatusCode)
		}
		if _, err := c.DoURL(ctx, http.MethodGet, loc, nil, &out); err != nil {
			return "", err
		}
	}
	if out.AccessSAS == "" {
		return "", fmt.Errorf("beginGetAccess returned no accessSAS")
	}
	return out.AccessSAS, nil
}

// revokeAccess ends the disk's SAS access.
func revokeAccess(ctx context.Context, c *armclient.Client, ref diskRef) error {
	resp, err := c.Do(ctx, http.MethodPost, ref.id()+"/endGetAccess", computeVersion, nil, nil, nil)
	if err != nil {
		return err
	}
	return await(ctx, c, resp)
}

// diskTarget resolves the disk a command names and the client to reach it.
func diskTarget(cf *clientFlags, df *diskFlags, arg string) (diskRef, *armclient.Client, error) {
	ref, err := df.ref(arg)
	if err != nil {
		return diskRef{}, nil, err
	}
	c, err := cf.client()
	return ref, c, err
}
