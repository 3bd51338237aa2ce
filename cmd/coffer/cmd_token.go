package main

import (
	"fmt"
	"time"

	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/server"
	"github.com/spf13/cobra"
)

func newTokenCmd() *cobra.Command {
	var dataDir, principal, audience string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Print a bearer token signed with the data directory's key",
		Long: `Print one line: a bearer token for the coffer server that uses this data
directory. Without --principal the token is the bootstrap administrator's
(Owner at "/"). With --principal OBJECT_ID it names another principal, which
can do only what its role assignments allow.`,
		Example: `  export COFFER_TOKEN=$(coffer token --data-dir ./coffer-data)
  coffer token --principal 11111111-2222-3333-4444-555555555555 --ttl 10m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := server.DataDir(dataDir)
			key, err := auth.LoadOrCreateKey(dataDir)
			if err != nil {
				return err
			}
			tenant, err := dir.ID(server.TenantFile)
			if err != nil {
				return err
			}
			name := ""
			if principal == "" {
				if principal, err = dir.ID(server.AdminFile); err != nil {
					return err
				}
				name = "coffer administrator"
			}
			tok, err := auth.Signer{Key: key, TenantID: tenant, Audience: audience, Clock: clock.Real{}}.Mint(principal, name, ttl)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "./coffer-data", "the server's data directory")
	f.StringVar(&principal, "principal", "", "object id (GUID) the token names (default: the bootstrap administrator)")
	f.StringVar(&audience, "audience", auth.ManagementAudience, "the token's audience")
	f.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	return cmd
}
