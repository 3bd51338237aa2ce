package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/google/uuid"
)

const mib = 1 << 20

// createGroup makes a resource group through raw HTTP.
func (s *server) createGroup(token, sub, name string) {
	s.t.Helper()
	path := "/subscriptions/" + sub + "/resourceGroups/" + name + "?api-version=2021-04-01"
	if code, _, body := s.do(http.MethodPut, path, token, `{"location":"westus"}`); code != 201 && code != 200 {
		s.t.Fatalf("create group %s: %d %s", name, code, body)
	}
}

// volumeDir is where the server keeps the bytes of the disk with uniqueID.
func (s *server) volumeDir(uniqueID string) string {
	return filepath.Join(s.dataDir, "volumes", uniqueID)
}

// pageClient is the official page blob client on a SAS URL.
func (s *server) pageClient(t *testing.T, sas string) *pageblob.Client {
	t.Helper()
	c, err := pageblob.NewClientWithNoCredential(sas, &pageblob.ClientOptions{ClientOptions: azcore.ClientOptions{Transport: s.client}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestDisksSDK drives managed disks with the official armcompute v8 client
// and their bytes with the official page blob client, on both stores.
func TestDisksSDK(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := startServer(t, b.db(t))
			ctx := context.Background()
			sub := newSubscription()
			token := s.token()
			s.createGroup(token, sub, "disks-rg")
			cred, opts := s.sdk(token)
			disks, err := armcompute.NewDisksClient(sub, cred, opts)
			if err != nil {
				t.Fatal(err)
			}

			// An Empty disk.
			poller, err := disks.BeginCreateOrUpdate(ctx, "disks-rg", "data-1", armcompute.Disk{
				Location: to.Ptr("West US"),
				Tags:     map[string]*string{"app": to.Ptr("db")},
				Properties: &armcompute.DiskProperties{
					CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)},
					DiskSizeGB:   to.Ptr[int32](4),
				},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			created, err := poller.PollUntilDone(ctx, fastPoll)
			if err != nil {
				t.Fatal(err)
			}
			p := created.Properties
			wantID := "/subscriptions/" + sub + "/resourceGroups/disks-rg/providers/Microsoft.Compute/disks/data-1"
			if *created.ID != wantID || *created.Location != "westus" || *created.Type != "Microsoft.Compute/disks" ||
				*created.SKU.Name != armcompute.DiskStorageAccountTypesStandardLRS || *created.Tags["app"] != "db" {
				t.Fatalf("created %+v", created.Disk)
			}
			if _, err := uuid.Parse(*p.UniqueID); err != nil {
				t.Fatalf("uniqueId %q: %v", *p.UniqueID, err)
			}
			if *p.DiskSizeBytes != 4<<30 || *p.DiskSizeGB != 4 || *p.DiskState != armcompute.DiskStateUnattached ||
				*p.ProvisioningState != "Succeeded" || *p.MaxShares != 1 || p.TimeCreated == nil ||
				*p.Encryption.Type != armcompute.EncryptionTypeEncryptionAtRestWithPlatformKey {
				t.Fatalf("properties %+v", p)
			}
			emptyDir := s.volumeDir(*p.UniqueID)
			if !exists(emptyDir) {
				t.Fatalf("no volume at %s", emptyDir)
			}
			got, err := disks.Get(ctx, "DISKS-RG", "data-1", nil)
			if err != nil || *got.ID != wantID || *got.Properties.UniqueID != *p.UniqueID {
				t.Fatalf("get: %+v %v", got, err)
			}

			// Listing by group and by subscription.
			var byGroup, bySub []string
			for pager := disks.NewListByResourceGroupPager("disks-rg", nil); pager.More(); {
				page, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range page.Value {
					byGroup = append(byGroup, *d.Name)
				}
			}
			for pager := disks.NewListPager(nil); pager.More(); {
				page, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range page.Value {
					bySub = append(bySub, *d.Name)
				}
			}
			if strings.Join(byGroup, ",") != "data-1" || strings.Join(bySub, ",") != "data-1" {
				t.Fatalf("lists: by group %v, by subscription %v", byGroup, bySub)
			}

			// Grow, and refuse to shrink.
			grow, err := disks.BeginUpdate(ctx, "disks-rg", "data-1", armcompute.DiskUpdate{
				Properties: &armcompute.DiskUpdateProperties{DiskSizeGB: to.Ptr[int32](8)},
				Tags:       map[string]*string{"app": to.Ptr("db"), "tier": to.Ptr("gold")},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			grown, err := grow.PollUntilDone(ctx, fastPoll)
			if err != nil {
				t.Fatal(err)
			}
			if *grown.Properties.DiskSizeBytes != 8<<30 || *grown.Properties.ProvisioningState != "Succeeded" || *grown.Tags["tier"] != "gold" {
				t.Fatalf("grown %+v", grown.Properties)
			}
			_, err = disks.BeginUpdate(ctx, "disks-rg", "data-1", armcompute.DiskUpdate{
				Properties: &armcompute.DiskUpdateProperties{DiskSizeGB: to.Ptr[int32](2)},
			}, nil)
			if !hasStatus(err, 400, "InvalidParameter") || !strings.Contains(err.Error(), "diskSizeGB") {
				t.Fatalf("shrink: %v", err)
			}

			// An Upload disk gets its bytes through a write SAS.
			const size = 24 * mib
			up, err := disks.BeginCreateOrUpdate(ctx, "disks-rg", "upload-1", armcompute.Disk{
				Location: to.Ptr("westus"),
				Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
					CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr[int64](size),
				}},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			upload, err := up.PollUntilDone(ctx, fastPoll)
			if err != nil {
				t.Fatal(err)
			}
			if *upload.Properties.DiskState != armcompute.DiskStateReadyToUpload || *upload.Properties.DiskSizeBytes != size {
				t.Fatalf("upload disk %+v", upload.Properties)
			}
			uploadDir := s.volumeDir(*upload.Properties.UniqueID)
			writeSAS := grant(t, disks, "upload-1", armcompute.AccessLevelWrite)
			if !strings.HasPrefix(writeSAS, s.endpoint+"/sas/") {
				t.Fatalf("SAS %s is not on %s", writeSAS, s.endpoint)
			}
			if d, _ := disks.Get(ctx, "disks-rg", "upload-1", nil); *d.Properties.DiskState != armcompute.DiskStateActiveUpload {
				t.Fatalf("state during upload: %s", *d.Properties.DiskState)
			}
			want := make([]byte, size)
			regions := []blob.HTTPRange{{Offset: 0, Count: 4 * mib}, {Offset: 8 * mib, Count: mib}, {Offset: size - 512, Count: 512}}
			writer := s.pageClient(t, writeSAS)
			for _, r := range regions {
				data := randomBytes(t, int(r.Count))
				copy(want[r.Offset:], data)
				if _, err := writer.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(data)), r, nil); err != nil {
					t.Fatalf("upload %+v: %v", r, err)
				}
			}
			_, err = disks.BeginDelete(ctx, "disks-rg", "upload-1", nil)
			if !hasStatus(err, 409, "OperationNotAllowed") {
				t.Fatalf("delete during upload: %v", err)
			}
			revoke(t, disks, "upload-1")
			if d, _ := disks.Get(ctx, "disks-rg", "upload-1", nil); *d.Properties.DiskState != armcompute.DiskStateUnattached {
				t.Fatalf("state after upload: %s", *d.Properties.DiskState)
			}
			// A revoked SAS is refused at once.
			_, err = writer.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(make([]byte, 512))), blob.HTTPRange{Count: 512}, nil)
			if !blobStatus(err, 403) {
				t.Fatalf("write through a revoked SAS: %v", err)
			}
			// Write access is for Upload disks waiting for their bytes.
			_, err = disks.BeginGrantAccess(ctx, "disks-rg", "upload-1", armcompute.GrantAccessData{
				Access: to.Ptr(armcompute.AccessLevelWrite), DurationInSeconds: to.Ptr[int32](60),
			}, nil)
			if !hasStatus(err, 409, "OperationNotAllowed") {
				t.Fatalf("second write grant: %v", err)
			}

			// Read it back.
			readSAS := grant(t, disks, "upload-1", armcompute.AccessLevelRead)
			reader := s.pageClient(t, readSAS)
			dl, err := reader.DownloadStream(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, dl.Body)
			dl.Body.Close()
			if err != nil || n != size {
				t.Fatalf("download: %d bytes, %v", n, err)
			}
			if wantSum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), wantSum[:]) {
				t.Fatal("downloaded bytes differ from the uploaded ones")
			}
			var listed int64
			var ranges []blob.HTTPRange
			for pager := reader.NewGetPageRangesPager(nil); pager.More(); {
				page, err := pager.NextPage(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range page.PageRange {
					ranges = append(ranges, blob.HTTPRange{Offset: *r.Start, Count: *r.End - *r.Start + 1})
					listed += *r.End - *r.Start + 1
				}
			}
			for _, r := range regions {
				if !covered(ranges, r) {
					t.Fatalf("page ranges %v miss written %+v", ranges, r)
				}
			}
			if listed >= size/2 {
				t.Fatalf("page ranges list %d of %d bytes: not sparse", listed, size)
			}
			_, err = reader.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(make([]byte, 512))), blob.HTTPRange{Count: 512}, nil)
			if !bloberror.HasCode(err, bloberror.AuthorizationPermissionMismatch) || !blobStatus(err, 403) {
				t.Fatalf("write through a read SAS: %v", err)
			}
			_, err = disks.BeginDelete(ctx, "disks-rg", "upload-1", nil)
			if !hasStatus(err, 409, "OperationNotAllowed") {
				t.Fatalf("delete with an active SAS: %v", err)
			}
			revoke(t, disks, "upload-1")
			if _, err := reader.GetProperties(ctx, nil); !blobStatus(err, 403) {
				t.Fatalf("read through a revoked SAS: %v", err)
			}

			// Delete: the row and the bytes go.
			del, err := disks.BeginDelete(ctx, "disks-rg", "upload-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := del.PollUntilDone(ctx, fastPoll); err != nil {
				t.Fatal(err)
			}
			if _, err := disks.Get(ctx, "disks-rg", "upload-1", nil); !hasStatus(err, 404, "ResourceNotFound") {
				t.Fatalf("get after delete: %v", err)
			}
			if exists(uploadDir) {
				t.Fatalf("volume %s outlived its disk", uploadDir)
			}
			// Deleting again is a 204 the SDK takes as done.
			again, err := disks.BeginDelete(ctx, "disks-rg", "upload-1", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := again.PollUntilDone(ctx, fastPoll); err != nil {
				t.Fatal(err)
			}

			// Deleting the group removes its disks' volumes.
			groups, err := armresources.NewResourceGroupsClient(sub, cred, opts)
			if err != nil {
				t.Fatal(err)
			}
			gd, err := groups.BeginDelete(ctx, "disks-rg", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := gd.PollUntilDone(ctx, fastPoll); err != nil {
				t.Fatal(err)
			}
			if exists(emptyDir) {
				t.Fatalf("volume %s outlived its group", emptyDir)
			}
			if _, err := disks.Get(ctx, "disks-rg", "data-1", nil); !hasStatus(err, 404, "ResourceGroupNotFound") {
				t.Fatalf("get after group delete: %v", err)
			}
		})
	}
}

func grant(t *testing.T, disks *armcompute.DisksClient, name string, level armcompute.AccessLevel) string {
	t.Helper()
	ctx := context.Background()
	p, err := disks.BeginGrantAccess(ctx, "disks-rg", name, armcompute.GrantAccessData{
		Access: to.Ptr(level), DurationInSeconds: to.Ptr[int32](3600),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.PollUntilDone(ctx, fastPoll)
	if err != nil {
		t.Fatal(err)
	}
	if res.AccessSAS == nil || *res.AccessSAS == "" {
		t.Fatalf("no accessSAS in %+v", res)
	}
	return *res.AccessSAS
}

func revoke(t *testing.T, disks *armcompute.DisksClient, name string) {
	t.Helper()
	p, err := disks.BeginRevokeAccess(context.Background(), "disks-rg", name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.PollUntilDone(context.Background(), fastPoll); err != nil {
		t.Fatal(err)
	}
}

func blobStatus(err error, status int) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == status
}

// covered reports whether r lies inside the union of ranges.
func covered(ranges []blob.HTTPRange, r blob.HTTPRange) bool {
	for off := r.Offset; off < r.Offset+r.Count; off += 512 {
		in := false
		for _, x := range ranges {
			if off >= x.Offset && off < x.Offset+x.Count {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	return true
}

// TestDiskBadInput checks each refused disk request's status, ARM code and
// target through raw HTTP.
func TestDiskBadInput(t *testing.T) {
	s := startServer(t, "")
	token := s.token()
	sub := newSubscription()
	s.createGroup(token, sub, "rg")
	disk := func(group, name string) string {
		return "/subscriptions/" + sub + "/resourceGroups/" + group + "/providers/Microsoft.Compute/disks/" + name + "?api-version=2025-01-02"
	}
	cases := []struct {
		name, path, body string
		status           int
		code, inMessage  string
	}{
		{"missing createOption", disk("rg", "d"), `{"location":"westus","properties":{"diskSizeGB":1}}`,
			400, "InvalidParameter", "creationData.createOption"},
		{"no properties", disk("rg", "d"), `{"location":"westus"}`, 400, "InvalidParameter", "creationData.createOption"},
		{"unknown createOption", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Teleport"},"diskSizeGB":1}}`,
			400, "InvalidParameter", "creationData.createOption"},
		{"Copy from a non-snapshot", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Copy","sourceResourceId":"/x"}}}`,
			400, "InvalidParameter", "creationData.sourceResourceId"},
		{"Copy without source", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Copy"}}}`,
			400, "InvalidParameter", "creationData.sourceResourceId"},
		{"diskSizeGB 0", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":0}}`,
			400, "InvalidParameter", "diskSizeGB"},
		{"diskSizeGB too big", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":32768}}`,
			400, "InvalidParameter", "diskSizeGB"},
		{"Empty without size", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Empty"}}}`,
			400, "InvalidParameter", "diskSizeGB"},
		{"upload not a multiple of 512", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Upload","uploadSizeBytes":20972033}}}`,
			400, "InvalidParameter", "uploadSizeBytes"},
		{"upload too small", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Upload","uploadSizeBytes":1048576}}}`,
			400, "InvalidParameter", "uploadSizeBytes"},
		{"upload without size", disk("rg", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Upload"}}}`,
			400, "InvalidParameter", "uploadSizeBytes"},
		{"bad sku", disk("rg", "d"), `{"location":"westus","sku":{"name":"Floppy_LRS"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`,
			400, "InvalidParameter", "sku.name"},
		{"no location", disk("rg", "d"), `{"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`,
			400, "LocationRequired", "location"},
		{"bad name", disk("rg", "bad!name"), `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`,
			400, "InvalidResourceName", "bad!name"},
		{"name too long", disk("rg", strings.Repeat("n", 81)), `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`,
			400, "InvalidResourceName", "80"},
		{"missing group", disk("nope", "d"), `{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`,
			404, "ResourceGroupNotFound", "nope"},
		{"malformed body", disk("rg", "d"), `{"location":`, 400, "InvalidRequestContent", "JSON"},
		{"unknown api-version", strings.Replace(disk("rg", "d"), "2025-01-02", "2019-01-01", 1),
			`{"location":"westus","properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":1}}`, 400, "InvalidApiVersionParameter", "2026-03-02"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := s.do(http.MethodPut, c.path, token, c.body)
			if code != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) || !strings.Contains(body, c.inMessage) {
				t.Fatalf("got %d %s, want %d %s mentioning %q", code, body, c.status, c.code, c.inMessage)
			}
		})
	}
	// Nothing was created along the way.
	code, _, body := s.do(http.MethodGet, "/subscriptions/"+sub+"/providers/Microsoft.Compute/disks?api-version=2025-01-02", token, "")
	if code != 200 || !strings.Contains(body, `"value":[]`) {
		t.Fatalf("list after refusals: %d %s", code, body)
	}
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"get missing disk", "GET", disk("rg", "ghost"), "", 404, "ResourceNotFound"},
		{"get in missing group", "GET", disk("nope", "ghost"), "", 404, "ResourceGroupNotFound"},
		{"patch missing disk", "PATCH", disk("rg", "ghost"), `{"tags":{}}`, 404, "ResourceNotFound"},
		{"grant on missing disk", "POST", strings.Replace(disk("rg", "ghost"), "?", "/beginGetAccess?", 1), `{"access":"Read","durationInSeconds":60}`, 404, "ResourceNotFound"},
		{"unknown operation", "GET", "/subscriptions/" + sub + "/providers/Microsoft.Compute/locations/westus/operations/" + uuid.NewString() + "?api-version=2025-01-02", "", 404, "OperationNotFound"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, body := s.do(c.method, c.path, token, c.body)
			if code != c.status || !strings.Contains(body, `"code":"`+c.code+`"`) {
				t.Fatalf("got %d %s, want %d %s", code, body, c.status, c.code)
			}
		})
	}
	if code, _, body := s.do(http.MethodDelete, disk("rg", "ghost"), token, ""); code != 204 {
		t.Fatalf("delete of a missing disk: %d %s", code, body)
	}
}

// TestDiskCLIRoundTrip imports a sparse image with `coffer disk import`,
// exports it with `coffer disk export` and compares.
func TestDiskCLIRoundTrip(t *testing.T) {
	s := startServer(t, "")
	sub := newSubscription()
	s.createGroup(s.token(), sub, "cli-rg")
	dir := t.TempDir()
	src := filepath.Join(dir, "image.raw")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 * mib
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ off, n int64 }{{0, 3 * mib}, {10*mib + 4096, 5000}, {33 * mib, 4*mib + 512}, {size - 4096, 4096}} {
		if _, err := f.WriteAt(randomBytes(t, int(r.n)), r.off); err != nil {
			t.Fatal(err)
		}
	}
	// Written zeros are data to the file but nothing to upload.
	if _, err := f.WriteAt(make([]byte, 2*mib), 20*mib); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out, err := s.run("disk", "import", src, "--resource-group", "cli-rg", "--name", "imported", "--subscription", sub)
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	id := "/subscriptions/" + sub + "/resourceGroups/cli-rg/providers/Microsoft.Compute/disks/imported"
	if !strings.Contains(out, id) {
		t.Fatalf("import output does not name the disk:\n%s", out)
	}
	show, err := s.run("disk", "show", id)
	if err != nil || !strings.Contains(show, `"diskState": "Unattached"`) || !strings.Contains(show, `"diskSizeBytes": 67108864`) {
		t.Fatalf("show: %v\n%s", err, show)
	}
	// The zeros were not uploaded: the server's copy is as thin as the image.
	var shown struct {
		Properties struct {
			UniqueID string `json:"uniqueId"`
		} `json:"properties"`
	}
	if err := json.Unmarshal([]byte(show), &shown); err != nil {
		t.Fatal(err)
	}
	if held := allocated(t, s.volumeDir(shown.Properties.UniqueID)); held >= 16*mib {
		t.Fatalf("the volume holds %d bytes for about 8 MiB of data: zeros were uploaded", held)
	}
	dst := filepath.Join(dir, "export.raw")
	if out, err := s.run("disk", "export", id, dst); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	if out, err := exec.Command("cmp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cmp: %v\n%s", err, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks*512 >= size/2 {
		t.Fatalf("export is %d bytes with %d allocated: not sparse", st.Size, st.Blocks*512)
	}

	// The thin wrappers.
	if out, err := s.run("disk", "create", "--resource-group", "cli-rg", "--name", "blank", "--size-gb", "2", "--subscription", sub); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	list, err := s.run("disk", "list", "--subscription", sub)
	if err != nil || !strings.Contains(list, "imported") || !strings.Contains(list, "blank") {
		t.Fatalf("list: %v\n%s", err, list)
	}
	if out, err := s.run("disk", "delete", "blank", "--resource-group", "cli-rg", "--subscription", sub); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if out, err := s.run("disk", "show", "blank", "--resource-group", "cli-rg", "--subscription", sub); err == nil || !strings.Contains(out, "ResourceNotFound") {
		t.Fatalf("show after delete: %v\n%s", err, out)
	}
	// A name needs a subscription.
	t.Setenv("COFFER_SUBSCRIPTION", "")
	if out, err := s.run("disk", "show", "imported", "--resource-group", "cli-rg"); err == nil || !strings.Contains(out, "subscription") {
		t.Fatalf("show without a subscription: %v\n%s", err, out)
	}
}

// allocated sums the bytes the filesystem allocated to the files under dir.
func allocated(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			return err
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return total
}

// TestAzureLargestDisks: disks up to Azure's 32767 GiB provision on this
// file system (a volume in segments) and take writes at their far end.
func TestAzureLargestDisks(t *testing.T) {
	s := startServer(t, "")
	admin := s.token()
	sub := newSubscription()
	s.createGroup(admin, sub, "big")
	for _, gb := range []int{16384, 32767} {
		id := "/subscriptions/" + sub + "/resourceGroups/big/providers/Microsoft.Compute/disks/d" + itoa(gb)
		s.createDisk(admin, id, "westus", gb)
		_, body := s.mustDo("GET", id+computeAPI, admin, "", 200)
		if at(jsonOf(t, body), "properties", "provisioningState") != "Succeeded" || at(jsonOf(t, body), "properties", "diskSizeGB") != float64(gb) {
			t.Fatalf("%d GiB disk: %s", gb, body)
		}
		uri, attachment := s.attach(admin, id)
		last := strconv.FormatInt(int64(gb)<<30-4096, 10)
		out := run(t, "qemu-io", "-f", "raw", "-c", "write -P 0x5a "+last+" 4k", "-c", "flush", "-c", "read -P 0x5a "+last+" 4k", uri)
		if strings.Contains(out, "Pattern verification failed") {
			t.Fatalf("%d GiB disk: the last 4 KiB did not read back: %s", gb, out)
		}
		s.mustDo("POST", id+"/detach"+computeAPI, admin, `{"attachmentId":"`+attachment+`"}`, 200)
	}
}
