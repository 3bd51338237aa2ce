// Package server wires coffer together: it prepares the data directory
// (keys, TLS certificate, node and tenant ids), opens the metadata store,
// starts the operation runner, and serves the ARM front door, health,
// metrics and the data planes until its context ends.
package server
