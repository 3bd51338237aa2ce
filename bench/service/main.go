package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coffer-backup/coffer/bench/internal/pattern"
	"github.com/coffer-backup/coffer/internal/armclient"
	"github.com/coffer-backup/coffer/internal/server"
)

const (
	computeVersion = "2025-01-02"
	groupVersion   = "2021-04-01"
	subscription   = "00000000-0000-0000-0000-00000000bec0"
	group          = "/subscriptions/" + subscription + "/resourceGroups/bench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: service mkdisk|attach|detach|change|snapshot|restore|delete|proxy [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	data := fs.String("data", "", "data directory of the running coffer serve")
	name := fs.String("name", "", "disk or snapshot name")
	disk := fs.String("disk", "", "source disk name (snapshot, change)")
	snap := fs.String("snap", "", "source snapshot name (restore)")
	size := fs.Int64("size", 4<<30, "mkdisk: size in bytes, a whole number of GiB")
	img := fs.String("img", "", "change: the image to change alongside the disk")
	seed := fs.Uint64("seed", 2, "change: random seed")
	extents := fs.Int("extents", 10, "change: 4 MiB extents to overwrite")
	check := fs.String("check", "", "restore: compare the first 4 KiB read with this image")
	listen := fs.String("listen", "127.0.0.1:0", "proxy: listen address")
	target := fs.String("target", "", "proxy: URL to forward to")
	if err := fs.Parse(os.Args[2:]); err != nil {
		os.Exit(2)
	}
	ctx := context.Background()
	if os.Args[1] == "proxy" {
		if err := runProxy(*listen, *target); err != nil {
			fmt.Fprintln(os.Stderr, "service:", err)
			os.Exit(1)
		}
		return
	}
	c, err := client(*data)
	if err == nil {
		switch os.Args[1] {
		case "mkdisk":
			err = mkdisk(ctx, c, *name, *size)
		case "attach":
			var uri string
			if uri, err = attach(ctx, c, *name); err == nil {
				result("uri", uri)
			}
		case "detach":
			err = detach(ctx, c, *name)
		case "change":
			err = change(ctx, c, *disk, *img, *seed, *extents)
		case "snapshot":
			err = snapshot(ctx, c, *disk, *name)
		case "restore":
			err = restore(ctx, c, *snap, *name, *check)
		case "delete":
			err = deleteDisk(ctx, c, *name)
		default:
			err = fmt.Errorf("unknown command %q", os.Args[1])
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

func result(key string, v any) { fmt.Printf("RESULT %s %v\n", key, v) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// client is the CLI's client for the server of data directory dir, as its
// bootstrap administrator.
func client(dir string) (*armclient.Client, error) {
	if dir == "" {
		return nil, errors.New("-data is required")
	}
	return armclient.New(armclient.Options{DataDir: dir, MintToken: func(dir string) (string, error) {
		return server.AdminToken(dir, "bench", 2*time.Hour)
	}})
}

func diskID(name string) string { return group + "/providers/Microsoft.Compute/disks/" + name }
func snapID(name string) string { return group + "/providers/Microsoft.Compute/snapshots/" + name }

// await polls a long-running operation's monitor until it ends. It polls
// every 10 ms, not the Retry-After a client would honour, so the time
// measured is the service's, not the poll interval's.
func await(ctx context.Context, c *armclient.Client, resp *http.Response) error {
	monitor := resp.Header.Get("Azure-AsyncOperation")
	if monitor == "" {
		return nil
	}
	for {
		var st struct {
			Status string `json:"status"`
			Error  *struct{ Code, Message string }
		}
		if _, err := c.DoURL(ctx, http.MethodGet, monitor, nil, &st); err != nil {
			return err
		}
		switch strings.ToLower(st.Status) {
		case "succeeded":
			return nil
		case "failed", "canceled":
			if st.Error != nil {
				return fmt.Errorf("operation %s: %s: %s", st.Status, st.Error.Code, st.Error.Message)
			}
			return fmt.Errorf("operation %s", st.Status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func put(ctx context.Context, c *armclient.Client, id string, body any) error {
	resp, err := c.Do(ctx, http.MethodPut, id, computeVersion, nil, body, nil)
	if err != nil {
		return err
	}
	return await(ctx, c, resp)
}

func mkdisk(ctx context.Context, c *armclient.Client, name string, size int64) error {
	if size <= 0 || size%(1<<30) != 0 {
		return fmt.Errorf("-size %d is not a whole number of GiB", size)
	}
	if _, err := c.Do(ctx, http.MethodPut, group, groupVersion, nil, map[string]any{"location": "westus"}, nil); err != nil {
		return err
	}
	return put(ctx, c, diskID(name), map[string]any{"location": "westus", "properties": map[string]any{
		"creationData": map[string]any{"createOption": "Empty"}, "diskSizeGB": size >> 30}})
}

func attach(ctx context.Context, c *armclient.Client, name string) (string, error) {
	var out struct {
		URI string `json:"nbdUri"`
	}
	if _, err := c.Do(ctx, http.MethodPost, diskID(name)+"/attach", computeVersion, nil, map[string]any{}, &out); err != nil {
		return "", err
	}
	return out.URI, nil
}

func detach(ctx context.Context, c *armclient.Client, name string) error {
	_, err := c.Do(ctx, http.MethodPost, diskID(name)+"/detach", computeVersion, nil, map[string]any{}, nil)
	return err
}

// change rewrites extents 4 MiB extents of the disk over NBD, and the same
// bytes at the same offsets in the image (pattern.Change).
func change(ctx context.Context, c *armclient.Client, name, imgPath string, seed uint64, extents int) error {
	uri, err := attach(ctx, c, name)
	if err != nil {
		return err
	}
	defer detach(ctx, c, name)
	nc, err := dialNBD(uri)
	if err != nil {
		return err
	}
	defer nc.Close()
	img, err := os.OpenFile(imgPath, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer img.Close()
	n, err := pattern.Change(nc.size, seed, extents, 4*pattern.MiB,
		func(p []byte, off int64) error { _, err := nc.WriteAt(p, off); return err },
		func(p []byte, off int64) error { _, err := img.WriteAt(p, off); return err })
	if err != nil {
		return err
	}
	if err := nc.Flush(); err != nil {
		return err
	}
	result("changed_bytes", n)
	return img.Sync()
}

// snapshot takes an incremental snapshot of the disk: the PUT until its
// operation has Succeeded.
func snapshot(ctx context.Context, c *armclient.Client, disk, name string) error {
	start := time.Now()
	err := put(ctx, c, snapID(name), map[string]any{"location": "westus", "properties": map[string]any{"incremental": true,
		"creationData": map[string]any{"createOption": "Copy", "sourceResourceId": diskID(disk)}}})
	if err != nil {
		return err
	}
	result("seconds", seconds(time.Since(start)))
	return nil
}

// restore creates a disk from the snapshot (the PUT until Succeeded), then
// attaches it and reads its first 4 KiB over NBD, timed from Succeeded to
// the bytes. It prints the NBD URI for the script's end-to-end read.
func restore(ctx context.Context, c *armclient.Client, snap, name, check string) error {
	start := time.Now()
	err := put(ctx, c, diskID(name), map[string]any{"location": "westus", "properties": map[string]any{
		"creationData": map[string]any{"createOption": "Copy", "sourceResourceId": snapID(snap)}}})
	if err != nil {
		return err
	}
	succeeded := time.Now()
	uri, err := attach(ctx, c, name)
	if err != nil {
		return err
	}
	nc, err := dialNBD(uri)
	if err != nil {
		return err
	}
	first := make([]byte, 4096)
	_, err = nc.ReadAt(first, 0)
	read := time.Now()
	nc.Close()
	if err != nil {
		return err
	}
	if check != "" {
		f, err := os.Open(check)
		if err != nil {
			return err
		}
		want := make([]byte, 4096)
		_, err = f.ReadAt(want, 0)
		f.Close()
		if err != nil {
			return err
		}
		if !bytes.Equal(first, want) {
			return errors.New("the restored disk's first 4 KiB differ from the image's")
		}
	}
	result("succeeded", seconds(succeeded.Sub(start)))
	result("first_4k", seconds(read.Sub(succeeded)))
	result("uri", uri)
	return nil
}

func deleteDisk(ctx context.Context, c *armclient.Client, name string) error {
	if err := detach(ctx, c, name); err != nil {
		var ae *armclient.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
			return err
		}
	}
	resp, err := c.Do(ctx, http.MethodDelete, diskID(name), computeVersion, nil, nil, nil)
	if err != nil {
		return err
	}
	return await(ctx, c, resp)
}
