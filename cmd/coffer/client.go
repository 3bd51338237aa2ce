package main

import (
	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/coffer-backup/coffer/internal/auth"
	"github.com/coffer-backup/coffer/internal/clock"
	"github.com/coffer-backup/coffer/internal/server"
	"github.com/spf13/cobra"
	"time"
)

// clientFlags are the connection flags every client command takes.
type clientFlags struct{ endpoint, token, cacert, dataDir string }

func (f *clientFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.endpoint, "endpoint", "", "coffer endpoint URL (or COFFER_ENDPOINT)")
	fl.StringVar(&f.token, "token", "", "bearer token (or COFFER_TOKEN)")
	fl.StringVar(&f.cacert, "cacert", "", "CA certificate to trust (or COFFER_CACERT)")
	fl.StringVar(&f.dataDir, "data-dir", "", "data directory of a local server: derives endpoint, token and CA")
}

func (f *clientFlags) client() (*armclient.Client, error) {
	return armclient.New(armclient.Options{
		Endpoint: f.endpoint, Token: f.token, CACert: f.cacert, DataDir: f.dataDir,
		MintToken: func(dir string) (string, error) {
			key, err := auth.LoadOrCreateKey(dir)
			if err != nil {
				return "", err
			}
			d := server.DataDir(dir)
			admin, err := d.ID(server.AdminFile)
			if err != nil {
				return "", err
			}
			tenant, err := d.ID(server.TenantFile)
			if err != nil {
				return "", err
			}
			return auth.Signer{Key: key, TenantID: tenant, Clock: clock.Real{}}.Mint(admin, "coffer administrator", time.Hour)
		},
	})
}
