package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

// backupInstance is the part of a backup instance's wire form the CLI
// reads.
type backupInstance struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		CurrentProtectionState string `json:"currentProtectionState"`
		DataSourceInfo         struct {
			ResourceID       string `json:"resourceID"`
			ResourceName     string `json:"resourceName"`
			ResourceLocation string `json:"resourceLocation"`
		} `json:"dataSourceInfo"`
		PolicyInfo struct {
			PolicyID         string `json:"policyId"`
			PolicyParameters *struct {
				DataStoreParametersList []struct {
					ResourceGroupID string `json:"resourceGroupId"`
				} `json:"dataStoreParametersList"`
			} `json:"policyParameters"`
		} `json:"policyInfo"`
	} `json:"properties"`
}

// snapshotGroup is the resource group the instance's snapshots go to.
func (b backupInstance) snapshotGroup() string {
	if p := b.Properties.PolicyInfo.PolicyParameters; p != nil && len(p.DataStoreParametersList) > 0 {
		return p.DataStoreParametersList[0].ResourceGroupID
	}
	return ""
}

// instanceFlags name a backup instance: by its id, or by its name with
// --vault (and the vault's resource group and subscription when --vault is
// a name), the way 'coffer protect' names the vault.
type instanceFlags struct {
	df    diskFlags
	vault string
}

func (f *instanceFlags) register(cmd *cobra.Command) {
	f.df.register(cmd, "resource group of the vault (when --vault is a name)")
	cmd.Flags().StringVar(&f.vault, "vault", "", "vault name or id, when BACKUP_INSTANCE is a name")
}

// ref turns a backup instance id, or a name with --vault, into an id.
func (f *instanceFlags) ref(arg string) (string, error) {
	if strings.HasPrefix(arg, "/") {
		parts := strings.Split(strings.Trim(arg, "/"), "/")
		if len(parts) != 10 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") ||
			!strings.EqualFold(parts[4], "providers") || !strings.EqualFold(parts[5], "Microsoft.DataProtection") ||
			!strings.EqualFold(parts[6], "backupVaults") || !strings.EqualFold(parts[8], "backupInstances") {
			return "", fmt.Errorf("%q is not a backup instance id "+
				"(/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.DataProtection/backupVaults/VAULT/backupInstances/NAME)", arg)
		}
		return "/" + strings.Join(parts, "/"), nil
	}
	if f.vault == "" {
		return "", fmt.Errorf("backup instance %q: a name needs --vault (and -g when the vault is a name), or give the full backup instance id", arg)
	}
	if strings.Contains(arg, "/") {
		return "", fmt.Errorf("%q is not a backup instance name; a full id starts with /subscriptions/", arg)
	}
	vault, err := vaultRef(&f.df, f.vault)
	if err != nil {
		return "", err
	}
	return vault + "/backupInstances/" + arg, nil
}

// vaultOfInstance is the id of the vault that holds the instance id.
func vaultOfInstance(id string) string {
	return id[:strings.LastIndex(strings.ToLower(id), "/backupinstances/")]
}

// loadInstance reads the backup instance id, saying which one is missing.
func loadInstance(ctx context.Context, c *armclient.Client, id string) (backupInstance, error) {
	var bi backupInstance
	if _, err := c.Do(ctx, http.MethodGet, id, protectionVersion, nil, nil, &bi); err != nil {
		return bi, fmt.Errorf("backup instance %s: %w", id, err)
	}
	return bi, nil
}

// backupJob is the part of a backup job's wire form the CLI reads.
type backupJob struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		Operation        string     `json:"operation"`
		Status           string     `json:"status"`
		BackupInstanceID string     `json:"backupInstanceId"`
		DataSourceName   string     `json:"dataSourceName"`
		StartTime        time.Time  `json:"startTime"`
		EndTime          *time.Time `json:"endTime"`
		Duration         string     `json:"duration"`
		ErrorDetails     []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errorDetails"`
		ExtendedInfo struct {
			AdditionalDetails   map[string]string `json:"additionalDetails"`
			RecoveryDestination string            `json:"recoveryDestination"`
			SourceRecoverPoint  *struct {
				RecoveryPointID   string     `json:"recoveryPointID"`
				RecoveryPointTime *time.Time `json:"recoveryPointTime"`
			} `json:"sourceRecoverPoint"`
		} `json:"extendedInfo"`
	} `json:"properties"`
}

// recoveryPoint is the part of a recovery point's wire form the CLI reads.
type recoveryPoint struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Properties struct {
		RecoveryPointID    string    `json:"recoveryPointId"`
		RecoveryPointTime  time.Time `json:"recoveryPointTime"`
		RetentionTagName   string    `json:"retentionTagName"`
		ExpiryTime         time.Time `json:"expiryTime"`
		RecoveryPointState string    `json:"recoveryPointState"`
	} `json:"properties"`
}

// awaitJob follows a DataProtection operation (backup, restore) to its end
// with a spinner on stderr, and returns the job the operation reports.
func awaitJob(cmd *cobra.Command, c *armclient.Client, resp *http.Response, what string) (string, error) {
	spin := progressbar.NewOptions(-1,
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionSpinnerType(14),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
	)
	if !isTerminal(cmd.ErrOrStderr()) {
		spin = progressbar.DefaultSilent(-1)
	}
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				spin.Add(1)
			}
		}
	}()
	st, err := awaitStatus(cmd.Context(), c, resp)
	close(stop)
	<-ticked
	spin.Finish()
	if err != nil {
		return "", err
	}
	if st.Properties == nil || st.Properties.JobID == "" {
		return "", fmt.Errorf("the operation succeeded without naming its job")
	}
	return st.Properties.JobID, nil
}

// isTerminal reports whether w is a terminal, where a live display can
// redraw itself; elsewhere (a pipe, a file, a CI log) output is printed
// once per change.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
