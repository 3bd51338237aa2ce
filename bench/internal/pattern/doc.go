// Package pattern is the disk contents the benchmarks share, so that
// bench/backup (in process) and bench/service (through the running
// service) back up the same bytes: 1 MiB extents, 60% random (ChaCha8) and
// 40% zero, chosen per extent from a seed, and the "change" that rewrites
// whole random extents of it.
package pattern
