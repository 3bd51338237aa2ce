// Command service drives a running `coffer serve` for bench/service/run:
// it creates disks, takes snapshots and restores them through the ARM API
// (the CLI's client, with the data directory's administrator token), and
// reads and writes disks over NBD, timing each step from the request to
// the state a client waits for. Each step is its own invocation so the
// script can drop caches between them. Results are "RESULT key value"
// lines.
package main
