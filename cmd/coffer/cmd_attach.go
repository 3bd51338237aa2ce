package main

import (
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

func newDiskAttachCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	cmd := &cobra.Command{
		Use:   "attach DISK",
		Short: "Attach a disk over NBD and print its nbd:// URI",
		Long: `Attach a disk, the way a VM attaches a managed disk, and print one line: the
nbd://host:port/EXPORT URI to connect to. The export name is a secret bound to
this disk: anyone holding the URI can read and write the disk until it is
detached. While attached the disk is 'Attached'; a disk with maxShares 1 takes
one attachment, a shared disk (maxShares > 1) that many.`,
		Example: `  URI=$(coffer disk attach db1 -g disks --data-dir ./coffer-data)
  qemu-img convert -n -O raw ./image.raw "$URI"
  nbdinfo "$URI"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, c, err := diskTarget(&cf, &df, args[0])
			if err != nil {
				return err
			}
			var out struct {
				ID  string `json:"attachmentId"`
				URI string `json:"nbdUri"`
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, ref.id()+"/attach", computeVersion, nil, map[string]any{}, &out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.URI)
			fmt.Fprintf(cmd.ErrOrStderr(), "attachment %s; detach with: coffer disk detach %s --attachment %s%s\n",
				out.ID, shellQuote(ref.id()), shellQuote(out.ID), cf.reuse())
			return nil
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the disk (when DISK is a name)")
	return cmd
}

func newDiskDetachCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var attachment string
	cmd := &cobra.Command{
		Use:   "detach DISK [--attachment ID]",
		Short: "Detach a disk (every attachment, or one); open NBD connections stop at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, c, err := diskTarget(&cf, &df, args[0])
			if err != nil {
				return err
			}
			body := map[string]string{}
			if attachment != "" {
				body["attachmentId"] = attachment
			}
			if _, err := c.Do(cmd.Context(), http.MethodPost, ref.id()+"/detach", computeVersion, nil, body, nil); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "detached", ref.id())
			return nil
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the disk (when DISK is a name)")
	cmd.Flags().StringVar(&attachment, "attachment", "", "detach only this attachment")
	return cmd
}
