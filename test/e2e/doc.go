// Package e2e drives the built coffer binary end to end: it starts
// `coffer serve` on a fresh data directory (SQLite, and PostgreSQL when the
// test script provides one), mints tokens with `coffer token`, and talks to
// it with the official Azure SDK for Go and with raw HTTP.
package e2e
