// Command shapegen writes internal/arm's response shape table from the
// vendored Azure REST API specs (test/e2e/testdata/specs): for each
// provider, api-version and operation, the properties each response type
// and the request body define, so the front door can drop from a response
// what a version does not define and refuse a request that sets it.
//
// Words:
//
//   - Shape: a flattened response type: its properties (allOf parents
//     merged in), the item shape of an array, the value shape of a map,
//     and for a discriminated base the subtype shape by discriminator
//     value, each string property's enum values and which properties are
//     read-only. Open shapes (free-form objects) are left as they are.
//   - Operation key: method and path template, each parameter written {},
//     a leading scope (x-ms-skip-url-encoding) dropped, lower case; coffer's
//     route patterns reduce to the same key. Two operations of one file
//     with one key are a generation error.
package main
