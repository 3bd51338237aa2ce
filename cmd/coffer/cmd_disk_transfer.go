package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"
)

const (
	// pageChunk is the most one Put Page carries, and what export reads at once.
	pageChunk = 4 << 20
	sector    = 512
	// minUpload is Azure's smallest Upload disk: 20 MiB and a VHD footer.
	minUpload = 20<<20 + 512
	// transfers is how many page requests are in flight at once.
	transfers = 4
	// sasDuration is how long an import or export may take.
	sasDuration = 24 * time.Hour
	// blobVersion is the Blob service version the transfers speak.
	blobVersion = "2021-08-06"
)

func newDiskImportCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var name, location string
	cmd := &cobra.Command{
		Use:   "import FILE --resource-group RG --name NAME",
		Short: "Create a disk from a raw image file",
		Long: `Create an Upload disk the size of FILE (rounded up to 512 bytes), upload FILE
through a write SAS and end the access. Pages that are all zeros are not sent,
so a sparse or mostly empty image uploads quickly and stays thin on the server.
The disk id is printed when the upload has finished.

Azure's smallest upload is 20 MiB + 512 bytes; a smaller image gets a disk of
that size, zero-filled past the image's end.`,
		Example: `  coffer disk import ./vm.raw -g rg --name vm-os --subscription $SUB --data-dir ./coffer-data
  COFFER_SUBSCRIPTION=$SUB coffer disk import ./data.img -g rg --name data --location eastus --endpoint https://coffer:8443`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := df.ref(name)
			if err != nil {
				return err
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", args[0])
			}
			size := (st.Size() + sector - 1) / sector * sector
			if size < minUpload {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s is %d bytes; the disk is %d bytes, Azure's smallest upload\n", args[0], st.Size(), int64(minUpload))
				size = minUpload
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			body := map[string]any{"location": location, "properties": map[string]any{
				"creationData": map[string]any{"createOption": "Upload", "uploadSizeBytes": size}}}
			if _, err := putDisk(ctx, c, ref, body); err != nil {
				return err
			}
			sas, err := grantAccess(ctx, c, ref, "Write", sasDuration)
			if err != nil {
				return err
			}
			bar := newBar(cmd, st.Size(), "uploading")
			upErr := upload(ctx, c.HTTP, sas, f, st.Size(), bar)
			bar.Finish()
			// The access ends either way; a failed upload leaves a disk to delete.
			if err := revokeAccess(ctx, c, ref); err != nil && upErr == nil {
				upErr = err
			}
			if upErr != nil {
				return fmt.Errorf("upload to %s: %w", ref.id(), upErr)
			}
			fmt.Fprintln(cmd.OutOrStdout(), ref.id())
			return nil
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group of the new disk (required)")
	cmd.Flags().StringVar(&name, "name", "", "name of the new disk (required)")
	cmd.Flags().StringVar(&location, "location", "westus", "location of the new disk")
	cmd.MarkFlagRequired("resource-group")
	cmd.MarkFlagRequired("name")
	return cmd
}

func newDiskExportCmd() *cobra.Command {
	var cf clientFlags
	var df diskFlags
	var force bool
	cmd := &cobra.Command{
		Use:   "export DISK_ID FILE",
		Short: "Copy a disk's bytes to a sparse raw file",
		Long: `Copy a disk to FILE through a read SAS. Only the ranges the disk lists as
allocated (Get Page Ranges) are read, and zeros are not written, so FILE is as
sparse as the disk. FILE gets the disk's size. The disk must be Unattached;
the access is ended when the copy has finished.`,
		Example: `  coffer disk export /subscriptions/$SUB/resourceGroups/rg/providers/Microsoft.Compute/disks/vm-os ./vm.raw --data-dir ./coffer-data
  coffer disk export vm-os ./vm.raw -g rg --subscription $SUB --force --data-dir ./coffer-data`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := df.ref(args[0])
			if err != nil {
				return err
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			c, err := cf.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var d disk
			if _, err := c.Do(ctx, http.MethodGet, ref.id(), computeVersion, nil, nil, &d); err != nil {
				return err
			}
			f, err := os.OpenFile(args[1], flags, 0o644)
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%s exists; pass --force to overwrite it", args[1])
			}
			if err != nil {
				return err
			}
			defer f.Close()
			done := false
			defer func() {
				if !done {
					os.Remove(args[1]) // a partial copy is worse than none
				}
			}()
			if err := f.Truncate(d.Properties.DiskSizeBytes); err != nil {
				return err
			}
			sas, err := grantAccess(ctx, c, ref, "Read", sasDuration)
			if err != nil {
				return err
			}
			dlErr := download(ctx, cmd, c.HTTP, sas, f)
			if err := revokeAccess(ctx, c, ref); err != nil && dlErr == nil {
				dlErr = err
			}
			if dlErr != nil {
				return fmt.Errorf("export of %s: %w", ref.id(), dlErr)
			}
			if err := f.Sync(); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			done = true
			return nil
		},
	}
	cf.register(cmd)
	df.register(cmd, "resource group, when DISK is a name")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite FILE if it exists")
	return cmd
}

func newBar(cmd *cobra.Command, total int64, what string) *progressbar.ProgressBar {
	return progressbar.NewOptions64(total,
		progressbar.OptionSetDescription(what),
		progressbar.OptionSetWriter(cmd.ErrOrStderr()),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(20),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(cmd.ErrOrStderr()) }),
	)
}

// sasURL adds query parameters to a SAS URL.
func sasURL(sas string, extra string) string {
	if strings.Contains(sas, "?") {
		return sas + "&" + extra
	}
	return sas + "?" + extra
}

// upload sends the non-zero pages of the first size bytes of f.
func upload(ctx context.Context, hc *http.Client, sas string, f *os.File, size int64, bar *progressbar.ProgressBar) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(transfers)
	for off := int64(0); off < size; off += pageChunk {
		n := min(int64(pageChunk), size-off)
		buf := make([]byte, (n+sector-1)/sector*sector)
		if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error {
			for _, r := range nonZeroRuns(buf) {
				if err := putPage(ctx, hc, sas, off+r.off, buf[r.off:r.off+r.n]); err != nil {
					return err
				}
			}
			bar.Add64(n)
			return nil
		})
	}
	return g.Wait()
}

type run struct{ off, n int64 }

// nonZeroRuns lists the runs of sectors of buf that hold a non-zero byte.
// Runs closer than 64 KiB are joined: one request beats two for a small
// gap.
func nonZeroRuns(buf []byte) []run {
	const join = 64 << 10
	var out []run
	size := int64(len(buf))
	for off := int64(0); off < size; off += sector {
		end := min(off+sector, size)
		if allZero(buf[off:end]) {
			continue
		}
		if k := len(out) - 1; k >= 0 && off-(out[k].off+out[k].n) < join {
			out[k].n = end - out[k].off
			continue
		}
		out = append(out, run{off: off, n: end - off})
	}
	return out
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

func putPage(ctx context.Context, hc *http.Client, sas string, off int64, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, sasURL(sas, "comp=page"), bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("x-ms-version", blobVersion)
	req.Header.Set("x-ms-page-write", "update")
	req.Header.Set("x-ms-range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(data))-1))
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return blobError(resp)
	}
	return nil
}

// blobError reads an Azure Storage error response.
func blobError(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	}
	if xml.Unmarshal(raw, &e) == nil && e.Code != "" {
		return fmt.Errorf("%s (HTTP %d): %s", e.Code, resp.StatusCode, strings.TrimSpace(e.Message))
	}
	return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
}

// pageRanges lists the disk's allocated ranges with Get Page Ranges.
func pageRanges(ctx context.Context, hc *http.Client, sas string) ([]run, error) {
	var out []run
	marker := ""
	for {
		q := "comp=pagelist"
		if marker != "" {
			q += "&marker=" + url.QueryEscape(marker)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sasURL(sas, q), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("x-ms-version", blobVersion)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			err := blobError(resp)
			resp.Body.Close()
			return nil, err
		}
		var list struct {
			Ranges []struct {
				Start int64 `xml:"Start"`
				End   int64 `xml:"End"`
			} `xml:"PageRange"`
			NextMarker string `xml:"NextMarker"`
		}
		err = xml.NewDecoder(resp.Body).Decode(&list)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("page list: %w", err)
		}
		for _, r := range list.Ranges {
			out = append(out, run{off: r.Start, n: r.End - r.Start + 1})
		}
		if list.NextMarker == "" {
			return out, nil
		}
		marker = list.NextMarker
	}
}

// download copies the allocated ranges of the disk into f, leaving zeros
// as holes.
func download(ctx context.Context, cmd *cobra.Command, hc *http.Client, sas string, f *os.File) error {
	ranges, err := pageRanges(ctx, hc, sas)
	if err != nil {
		return err
	}
	var total int64
	for _, r := range ranges {
		total += r.n
	}
	bar := newBar(cmd, total, "downloading")
	defer bar.Finish()
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(transfers)
	for _, r := range ranges {
		for off := r.off; off < r.off+r.n; off += pageChunk {
			n := min(int64(pageChunk), r.off+r.n-off)
			if ctx.Err() != nil {
				break
			}
			g.Go(func() error {
				buf, err := getRange(ctx, hc, sas, off, n)
				if err != nil {
					return err
				}
				for _, z := range nonZeroRuns(buf) {
					if _, err := f.WriteAt(buf[z.off:z.off+z.n], off+z.off); err != nil {
						return err
					}
				}
				bar.Add64(n)
				return nil
			})
		}
	}
	return g.Wait()
}

func getRange(ctx context.Context, hc *http.Client, sas string, off, n int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sas, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("x-ms-version", blobVersion)
	req.Header.Set("x-ms-range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(off+n-1, 10))
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent && resp.StatusCode != http.StatusOK {
		return nil, blobError(resp)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		return nil, fmt.Errorf("range %d+%d: %w", off, n, err)
	}
	return buf, nil
}
