package main

import (
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/coffer-backup/coffer/internal/server"
	"github.com/spf13/cobra"
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
			return server.AdminToken(dir, "coffer administrator", time.Hour)
		},
	})
}

// reuse is the connection flags the user gave, as they go on a command the
// CLI prints for them to run next (a role grant, a detach), so the command
// can be pasted as is. The token is left out: it is a secret, and printed
// commands end up in terminals and logs; a token from COFFER_TOKEN or
// --data-dir reaches the pasted command anyway.
func (f *clientFlags) reuse() string {
	var b strings.Builder
	for _, fl := range []struct{ name, value string }{{"endpoint", f.endpoint}, {"cacert", f.cacert}, {"data-dir", f.dataDir}} {
		if fl.value != "" {
			b.WriteString(" --" + fl.name + " " + shellQuote(fl.value))
		}
	}
	return b.String()
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
