// Package ops runs coffer's durable long-running operations.
//
// Every ARM call that answers 201/202 with Azure-AsyncOperation and Location
// headers creates an Operation in the metadata store, in the same
// transaction as the resource it acts on. A Runner in every `coffer serve`
// process claims runnable operations with a lease, calls the Handler
// registered for the operation's kind, and records the terminal status.
//
// Words:
//
//   - Kind: the name of the work, e.g. "resources.deleteGroup"; one Handler a
//     kind.
//   - Lease: a claim on an operation until a time. A worker renews it while
//     the handler runs; if the process dies the lease runs out (or is dropped
//     when the same node starts again) and another worker takes the
//     operation. Handlers are therefore written to be re-run: each step
//     checks what an earlier attempt already did.
//   - Attempt: one run of the handler. A handler that fails with a transient
//     error is retried with back-off; after MaxAttempts the operation fails.
//     No operation stays InProgress forever.
//
// Why not river: the operations live in the same schema and the same
// transactions as the resources (goose migrations, SQLite and PostgreSQL with
// identical SQL), and claiming is one conditional UPDATE, which both
// databases make atomic. That is all coffer needs from a queue.
package ops
