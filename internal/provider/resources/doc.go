// Package resources serves Microsoft.Resources resource groups: create,
// read, tag, list and delete (a long-running operation that deletes what the
// group contains, through the Cascade of every provider that owns resources).
package resources
