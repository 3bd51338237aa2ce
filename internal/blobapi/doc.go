// Package blobapi is the data plane behind the SAS URL that a managed disk's or
// snapshot's beginGetAccess returns. It speaks enough of the Azure Blob Storage
// Page Blob REST API that azcopy, the official SDKs and anything else that
// downloads or uploads a VHD through a disk SAS work unchanged.
//
// # URL shape
//
// Azure hands out https://md-xxxx.blob.core.windows.net/<container>/abcd?<sas>.
// Coffer hands out
//
//	<base>/sas/<accessID>/abcd?sv=2018-03-28&sr=b&sp=r&se=2030-01-02T03%3A04%3A05Z&rid=<resourceID>&sig=<mac>
//
// where <base> is the public origin of this handler (scheme, host and any path
// prefix the reverse proxy strips), <accessID> names one grant of access and
// "abcd" is the only blob name, as on Azure. The handler serves exactly the
// path pattern /sas/{accessID}/{blob}; anything else is InvalidUri.
//
// # SAS fields
//
//   - sv: the SAS version; always 2018-03-28, the version Azure uses for disk SAS.
//   - sr: the signed resource; always b (a blob).
//   - sp: the permissions; r (read) or rw (read and write, for an upload).
//   - se: the expiry, RFC 3339 in UTC at one-second precision.
//   - rid: the ARM id of the disk or snapshot; omitted when the grant has none.
//     Azure has no such field; coffer carries it so the signature can bind it.
//   - sig: base64url (unpadded) HMAC-SHA256, under the Signer's key, of a
//     length-prefixed encoding of sv, sr, accessID, rid, sp and se. Editing any
//     field, including turning sp=r into sp=rw, invalidates it.
//
// A signature proves the URL was issued; it cannot be withdrawn. Revocation
// (endGetAccess, deleting the disk) is the Lookup function's job: the handler
// asks it, on every request, whether the access id is still live.
//
// # Served subset of the Page Blob API
//
//   - Get Blob Properties (HEAD): size, x-ms-blob-type: PageBlob, ETag, Last-Modified.
//   - Get Blob (GET): whole blob or one byte range via Range or x-ms-range
//     (x-ms-range wins), streamed; x-ms-range-get-content-md5 and -crc64 for
//     ranges up to 4 MiB.
//   - Put Page (PUT ?comp=page): x-ms-page-write update (at most 4 MiB, 512-byte
//     aligned, Content-MD5 and x-ms-content-crc64 checked when sent) and clear.
//     A 201 means the bytes are durable: the handler calls Disk.Flush first.
//   - Get Page Ranges (GET ?comp=pagelist): allocated ranges, merged, with an
//     optional Range, marker and maxresults; prevsnapshot and
//     x-ms-previous-snapshot-url are handed to a Disk that implements Differ.
//
// Not served: Put Blob, Delete, leases (x-ms-lease-id is refused as Azure
// refuses it on an unleased blob), metadata, tags (x-ms-if-tags), snapshots
// via ?snapshot=, customer-provided keys and encryption scopes, and
// structured-message bodies (x-ms-structured-body); each is refused rather
// than ignored, since ignoring it would read or write the wrong bytes.
// If-Match, If-None-Match, If-Modified-Since and If-Unmodified-Since are
// honoured against the ETag and Last-Modified (see Versioned), and the
// x-ms-if-sequence-number-* conditions against a sequence number that is
// always 0.
//
// Status codes follow what the Azure service sends, which is not always its
// error table: a malformed or misaligned page range is 400 InvalidHeaderValue naming
// the header (what the service answers for bytes=0-3), a page range past the
// end is 416 InvalidPageRange, a read range starting at or past the end is
// 416 InvalidRange with Content-Range: bytes */<size>, and a read range
// ending past the end is cut to the size.
//
// # Durability
//
// A 201 to Put Page means the pages survive a crash: the handler calls
// Disk.Flush after every page write or clear, because clients (azcopy, the
// SDKs) never re-send an acknowledged page. BenchmarkSDK measures the cost:
// on a shared 2-vCPU development VM (ext4), sequential 4 MiB writes over TLS
// ran at 200-480 MB/s with the fdatasync and 240-830 MB/s without, the gap
// widest while blocks are first allocated and within noise when warm. A Disk
// serving many concurrent writers should coalesce overlapping Flush calls.
//
// # Words
//
//   - Grant: what a SAS allows: one access id, one resource, read or read-write,
//     until an expiry.
//   - Access id: the random 128-bit name of one grant, chosen when the SAS is
//     issued and looked up on every request so that it can be revoked.
//   - Page: 512 bytes, the unit every write and clear is aligned to.
package blobapi
