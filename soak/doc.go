// Command soak is a crash soak of a running coffer: it starts `coffer
// serve`, drives it through NBD writes, snapshots, garbage collection,
// backups and restores, kills it with SIGKILL at a random moment of each
// trial, restarts it on the same data directory and checks that nothing
// acknowledged was lost and nothing is half there.
//
// Words:
//   - acknowledged: the client was told it happened: a qemu-io write whose
//     FLUSH returned, an operation whose status monitor said Succeeded, a
//     DELETE whose operation finished.
//   - survived: an acknowledged thing found after the restart as it was
//     acknowledged (a write reads back, a snapshot reads back its image, a
//     deleted snapshot stays deleted).
//   - half there: a snapshot, job or restored disk still not finished when
//     the settle bound runs out, a Failed snapshot record, a snapshot no
//     recovery point or soak step owns, a recovery point without its
//     snapshot, or a failed restore that left a disk.
//   - image: what a disk or snapshot should hold, as a map from a 64 KiB
//     block's offset to the byte it is filled with (absent: zeros).
//
// Run it through scripts/soak, which builds coffer first.
package main
