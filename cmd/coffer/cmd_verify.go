package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/internal/chunk"
	diskengine "github.com/coffer-backup/coffer/internal/disk"
	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/server"
	"github.com/coffer-backup/coffer/internal/snapshot"
	"github.com/coffer-backup/coffer/internal/volume"
	"github.com/spf13/cobra"
)

func newVerifyCmd() *cobra.Command {
	var dataDir, blobURL, dbURL string
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Read back every stored chunk and report the snapshots any damage breaks",
		Long: `Read every chunk that a snapshot references from the chunk store, decrypt and
decompress it and check its BLAKE3 digest. Damaged or missing chunks are listed
with the snapshots and disks they break and where (byte ranges); the exit status
is non-zero if there is any. A damaged chunk is moved to quarantine, so the next
backup that holds its data stores it again; verify then lists it as healed, with
the backups that stored it again.

verify changes nothing but the place of damaged chunks, so it can run while
'coffer serve' uses the same data directory. It finds the chunk store the server uses (--blob) from the data
directory, and names snapshots from the metadata store (--db).`,
		Example: `  coffer verify --data-dir ./coffer-data`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if blobURL == "" {
				raw, err := os.ReadFile(filepath.Join(dataDir, server.BlobURLFile))
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				blobURL = strings.TrimSpace(string(raw))
			}
			store, err := chunk.Open(ctx, blobURL, dataDir, chunk.Options{})
			if err != nil {
				return err
			}
			defer store.Close()
			names := snapshotNames(ctx, dataDir, dbURL)
			var bar interface{ Set64(int64) error }
			rep, err := snapshot.Verify(ctx, store, snapshot.VerifyOptions{Progress: func(done, total int64) {
				if bar == nil {
					bar = newBar(cmd, total, "verifying chunks")
				}
				bar.Set64(done)
			}})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "checked %d chunks of %d snapshots\n", rep.Checked, rep.Indexes)
			for _, b := range rep.BadIndexes {
				fmt.Fprintf(out, "BAD SNAPSHOT INDEX %s: %v\n", name(names, b.Name), b.Err)
			}
			for _, b := range rep.Bad {
				state := ""
				if b.Quarantined {
					state = " (quarantined: the next backup holding its data stores it again)"
				}
				fmt.Fprintf(out, "BAD CHUNK %s%s: %v\n", b.Digest, state, b.Err)
				for _, idx := range b.Indexes {
					fmt.Fprintf(out, "  breaks %s at %s\n", name(names, idx), byteRanges(b.Ranges[idx]))
				}
			}
			for _, h := range rep.Healed {
				by := make([]string, len(h.By))
				for i, idx := range h.By {
					by[i] = name(names, idx)
				}
				fmt.Fprintf(out, "HEALED CHUNK %s, quarantined %s: stored again by %s\n",
					h.Digest, h.QuarantinedAt.UTC().Format(time.RFC3339), strings.Join(by, ", "))
			}
			if !rep.OK() {
				return fmt.Errorf("%d damaged chunks, %d unreadable snapshot indexes", len(rep.Bad), len(rep.BadIndexes))
			}
			fmt.Fprintln(out, "no damage found")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data-dir", "./coffer-data", "the server's data directory (keys, default chunk store)")
	f.StringVar(&blobURL, "blob", "", "chunk store URL (default: the one serve uses)")
	f.StringVar(&dbURL, "db", "", "metadata store, to name snapshots (default: SQLite in the data dir)")
	return cmd
}

// snapshotNames maps index names to snapshot ids, as far as the metadata
// store can be read; verify works without it.
func snapshotNames(ctx context.Context, dataDir, dbURL string) map[string]string {
	if dbURL == "" {
		dbURL = filepath.Join(dataDir, server.DBFile)
		if _, err := os.Stat(dbURL); err != nil {
			return nil
		}
	}
	store, err := meta.Open(ctx, dbURL)
	if err != nil {
		return nil
	}
	defer store.Close()
	// Whatever could be read names what it can.
	names, _ := diskengine.IndexNames(ctx, store)
	return names
}

// byteRanges prints disk byte ranges as "bytes 0-1048575, ..." (ends
// inclusive, as HTTP ranges are).
func byteRanges(rs []volume.Range) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%d-%d", r.Off, r.Off+r.Len-1)
	}
	return "bytes " + strings.Join(parts, ", ")
}

func name(names map[string]string, index string) string {
	if id, ok := names[index]; ok {
		return id + " (" + index + ")"
	}
	return index
}
