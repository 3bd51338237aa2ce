package meta

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coffer-backup/coffer/internal/errs"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

//go:embed migrations/*.sql
var migrations embed.FS

// Open opens the store named by url and brings its schema up to date.
// "postgres://…" or "postgresql://…" is PostgreSQL; "sqlite://PATH", "file:PATH"
// or a plain path is SQLite.
func Open(ctx context.Context, url string) (Store, error) {
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		db, err := sql.Open("pgx", url)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(16)
		return finishOpen(ctx, db, "postgres", goose.DialectPostgres)
	default:
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite://"), "file:")
		if path == "" {
			return nil, errs.E(errs.Invalid, "InvalidDatabaseURL", "an empty database path")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		// WAL lets readers run beside the one writer; immediate transactions
		// take the write lock up front so two writers queue on busy_timeout
		// instead of failing on upgrade; synchronous(FULL) makes a commit
		// survive power loss, not only a crash.
		dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
			"&_pragma=synchronous(FULL)&_pragma=foreign_keys(ON)&_txlock=immediate"
		db, err := sql.Open("sqlite", dsn)
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(8)
		return finishOpen(ctx, db, "sqlite", goose.DialectSQLite3)
	}
}

func finishOpen(ctx context.Context, db *sql.DB, driver string, dialect goose.Dialect) (Store, error) {
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s: %w", driver, err)
	}
	if err := Migrate(ctx, db, dialect); err != nil {
		db.Close()
		return nil, err
	}
	s := &sqlStore{db: db, driver: driver}
	s.queries = queries{q: db, rebind: rebinder(driver)}
	return s, nil
}

// Migrate applies the embedded goose migrations.
func Migrate(ctx context.Context, db *sql.DB, dialect goose.Dialect) error {
	sub, err := fsSub()
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(dialect, db, sub)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

func rebinder(driver string) func(string) string {
	if driver != "postgres" {
		return func(s string) string { return s }
	}
	return func(s string) string {
		var b strings.Builder
		n := 0
		for _, r := range s {
			if r == '?' {
				n++
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(n))
				continue
			}
			b.WriteRune(r)
		}
		return b.String()
	}
}

type sqlStore struct {
	queries
	db     *sql.DB
	driver string
}

var _ Store = (*sqlStore)(nil)

func (s *sqlStore) DB() *sql.DB    { return s.db }
func (s *sqlStore) Driver() string { return s.driver }
func (s *sqlStore) Close() error   { return s.db.Close() }

func (s *sqlStore) InTx(ctx context.Context, fn func(Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(queries{q: tx, rebind: s.rebind}); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (s *sqlStore) ClaimOperation(ctx context.Context, owner string, now time.Time, lease time.Duration) (Operation, bool, error) {
	// Pick candidates, then claim one with a conditional UPDATE: whoever
	// changes the row owns it, on SQLite and PostgreSQL alike, with no
	// dialect-specific locking.
	// Runnable: not leased (or the lease ran out), or pinned to this owner
	// at creation and never tried.
	rows, err := s.q.QueryContext(ctx, s.rebind(`SELECT id FROM operations
		WHERE status = ? AND (lease_until < ? OR (lease_owner = ? AND attempts = 0)) AND not_before <= ?
		ORDER BY started_at LIMIT 8`),
		StatusInProgress, now.UnixNano(), owner, now.UnixNano())
	if err != nil {
		return Operation{}, false, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return Operation{}, false, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return Operation{}, false, err
	}
	for _, id := range ids {
		res, err := s.q.ExecContext(ctx, s.rebind(`UPDATE operations
			SET lease_owner = ?, lease_until = ?, attempts = attempts + 1
			WHERE id = ? AND status = ? AND (lease_until < ? OR (lease_owner = ? AND attempts = 0))`),
			owner, now.Add(lease).UnixNano(), id, StatusInProgress, now.UnixNano(), owner)
		if err != nil {
			return Operation{}, false, err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			op, err := s.GetOperation(ctx, id)
			return op, err == nil, err
		}
	}
	return Operation{}, false, nil
}

func (s *sqlStore) RenewLease(ctx context.Context, id, owner string, until time.Time) (bool, error) {
	res, err := s.q.ExecContext(ctx, s.rebind(`UPDATE operations SET lease_until = ?
		WHERE id = ? AND lease_owner = ? AND status = ?`), until.UnixNano(), id, owner, StatusInProgress)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (s *sqlStore) ReleaseOperation(ctx context.Context, id, owner string, notBefore time.Time) error {
	_, err := s.q.ExecContext(ctx, s.rebind(`UPDATE operations SET lease_owner = '', lease_until = 0, not_before = ?
		WHERE id = ? AND lease_owner = ?`), notBefore.UnixNano(), id, owner)
	return err
}

func (s *sqlStore) ReleaseLeases(ctx context.Context, owner string) error {
	_, err := s.q.ExecContext(ctx, s.rebind(`UPDATE operations SET lease_owner = '', lease_until = 0
		WHERE lease_owner = ? AND status = ?`), owner, StatusInProgress)
	return err
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

type queries struct {
	q      querier
	rebind func(string) string
}

var _ Tx = queries{}

// indexTables hold one row per resource of some type, keyed by the
// resource's id_key; a row goes when its resource does.
var indexTables = []string{"role_assignments", "backup_instances", "resource_labels", "resource_times"}

func key(s string) string { return strings.ToLower(strings.TrimSuffix(s, "/")) }

// storable refuses text PostgreSQL cannot hold (invalid UTF-8, NUL) before
// it reaches either database: PostgreSQL would fail the statement, which
// surfaces as an internal error, and SQLite would keep what PostgreSQL
// cannot, so a store could not be moved. Both answer the caller's mistake.
func storable(texts ...string) error {
	for _, t := range texts {
		if !utf8.ValidString(t) || strings.IndexByte(t, 0) >= 0 {
			return errs.E(errs.Invalid, "InvalidRequestContent", "A name, id or value in the request is not UTF-8 text without NUL characters.")
		}
	}
	return nil
}

const resourceColumns = `id, type_key, name, subscription_key, group_key, parent_key, body, etag, created_at, updated_at`

func (t queries) GetResource(ctx context.Context, id string) (Resource, error) {
	if err := storable(id); err != nil {
		return Resource{}, err
	}
	row := t.q.QueryRowContext(ctx, t.rebind(`SELECT `+resourceColumns+` FROM resources WHERE id_key = ?`), key(id))
	r, err := scanResource(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Resource{}, errs.E(errs.NotFound, "ResourceNotFound", "The resource '%s' was not found.", id)
	}
	return r, err
}

type scanner interface{ Scan(dest ...any) error }

func scanResource(s scanner) (Resource, error) {
	var r Resource
	var body string
	var created, updated int64
	if err := s.Scan(&r.ID, &r.Type, &r.Name, &r.Subscription, &r.ResourceGroup, &r.Parent, &body, &r.ETag, &created, &updated); err != nil {
		return Resource{}, err
	}
	r.Body = []byte(body)
	r.CreatedAt = time.Unix(0, created).UTC()
	r.UpdatedAt = time.Unix(0, updated).UTC()
	return r, nil
}

func (t queries) PutResource(ctx context.Context, r Resource) (bool, error) {
	if r.UpdatedAt.IsZero() {
		return false, fmt.Errorf("put %s: UpdatedAt not set", r.ID)
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = r.UpdatedAt
	}
	if err := storable(r.ID, r.Type, r.Name, r.Subscription, r.ResourceGroup, r.Parent, string(r.Body), r.ETag); err != nil {
		return false, err
	}
	res, err := t.q.ExecContext(ctx, t.rebind(`UPDATE resources SET body = ?, etag = ?, updated_at = ? WHERE id_key = ?`),
		string(r.Body), r.ETag, r.UpdatedAt.UnixNano(), key(r.ID))
	if err != nil {
		return false, err
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return false, nil
	}
	_, err = t.q.ExecContext(ctx, t.rebind(`INSERT INTO resources
		(id_key, id, type_key, subscription_key, group_key, parent_key, name, body, etag, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		key(r.ID), r.ID, key(r.Type), key(r.Subscription), key(r.ResourceGroup), key(r.Parent), r.Name,
		string(r.Body), r.ETag, r.CreatedAt.UnixNano(), r.UpdatedAt.UnixNano())
	if err != nil {
		return false, err
	}
	return true, nil
}

func (t queries) DeleteResource(ctx context.Context, id string) (bool, error) {
	if err := storable(id); err != nil {
		return false, err
	}
	for _, table := range indexTables {
		if _, err := t.q.ExecContext(ctx, t.rebind(`DELETE FROM `+table+` WHERE id_key = ?`), key(id)); err != nil {
			return false, err
		}
	}
	res, err := t.q.ExecContext(ctx, t.rebind(`DELETE FROM resources WHERE id_key = ?`), key(id))
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// likePrefix escapes s for use as a LIKE prefix with ESCAPE '!'.
func likePrefix(s string) string {
	r := strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")
	return r.Replace(s) + "%"
}

func (t queries) DeleteTree(ctx context.Context, id string) (int, error) {
	if err := storable(id); err != nil {
		return 0, err
	}
	k := key(id)
	for _, table := range indexTables {
		if _, err := t.q.ExecContext(ctx, t.rebind(`DELETE FROM `+table+` WHERE id_key = ? OR id_key LIKE ? ESCAPE '!'`),
			k, likePrefix(k+"/")); err != nil {
			return 0, err
		}
	}
	res, err := t.q.ExecContext(ctx, t.rebind(`DELETE FROM resources WHERE id_key = ? OR id_key LIKE ? ESCAPE '!'`),
		k, likePrefix(k+"/"))
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (q Query) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		conds = append(conds, cond)
		args = append(args, v)
	}
	if q.Type != "" {
		add("type_key = ?", key(q.Type))
	}
	if q.Subscription != "" {
		add("subscription_key = ?", key(q.Subscription))
	}
	if q.ResourceGroup != "" {
		add("group_key = ?", key(q.ResourceGroup))
	}
	if q.Parent != "" {
		add("parent_key = ?", key(q.Parent))
	}
	if q.Under != "" {
		add("id_key LIKE ? ESCAPE '!'", likePrefix(key(q.Under)+"/"))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

func (t queries) ListResources(ctx context.Context, q Query) (Page, error) {
	if err := storable(q.Type, q.Subscription, q.ResourceGroup, q.Parent, q.Under, q.After); err != nil {
		return Page{}, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	where, args := q.where()
	if q.After != "" {
		if where == "" {
			where = " WHERE id_key > ?"
		} else {
			where += " AND id_key > ?"
		}
		args = append(args, q.After)
	}
	args = append(args, limit+1)
	rows, err := t.q.QueryContext(ctx, t.rebind(`SELECT `+resourceColumns+`, id_key FROM resources`+where+
		` ORDER BY id_key LIMIT ?`), args...)
	if err != nil {
		return Page{}, err
	}
	defer rows.Close()
	page := Page{Items: []Resource{}}
	var lastKey string
	for rows.Next() {
		var r Resource
		var body, idKey string
		var created, updated int64
		if err := rows.Scan(&r.ID, &r.Type, &r.Name, &r.Subscription, &r.ResourceGroup, &r.Parent, &body, &r.ETag, &created, &updated, &idKey); err != nil {
			return Page{}, err
		}
		if len(page.Items) == limit {
			page.Next = lastKey
			break
		}
		r.Body = []byte(body)
		r.CreatedAt = time.Unix(0, created).UTC()
		r.UpdatedAt = time.Unix(0, updated).UTC()
		page.Items = append(page.Items, r)
		lastKey = idKey
	}
	return page, rows.Err()
}

func (t queries) CountResources(ctx context.Context, q Query) (int, error) {
	if err := storable(q.Type, q.Subscription, q.ResourceGroup, q.Parent, q.Under); err != nil {
		return 0, err
	}
	where, args := q.where()
	var n int
	err := t.q.QueryRowContext(ctx, t.rebind(`SELECT COUNT(*) FROM resources`+where), args...).Scan(&n)
	return n, err
}

const operationColumns = `id, kind, resource_id, status, input, result, error, attempts, lease_owner, lease_until, not_before, started_at, ended_at`

func (t queries) CreateOperation(ctx context.Context, op Operation) error {
	if op.Status == "" {
		op.Status = StatusInProgress
	}
	_, err := t.q.ExecContext(ctx, t.rebind(`INSERT INTO operations (`+operationColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		op.ID, op.Kind, op.ResourceID, op.Status, string(op.Input), string(op.Result), string(op.Error),
		op.Attempts, op.LeaseOwner, nanos(op.LeaseUntil), nanos(op.NotBefore), nanos(op.StartedAt), nanos(op.EndedAt))
	return err
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func (t queries) GetOperation(ctx context.Context, id string) (Operation, error) {
	if err := storable(id); err != nil {
		return Operation{}, err
	}
	var op Operation
	var input, result, errJSON string
	var leaseUntil, notBefore, started, ended int64
	err := t.q.QueryRowContext(ctx, t.rebind(`SELECT `+operationColumns+` FROM operations WHERE id = ?`), id).Scan(
		&op.ID, &op.Kind, &op.ResourceID, &op.Status, &input, &result, &errJSON, &op.Attempts, &op.LeaseOwner,
		&leaseUntil, &notBefore, &started, &ended)
	if errors.Is(err, sql.ErrNoRows) {
		return Operation{}, errs.E(errs.NotFound, "OperationNotFound", "The operation '%s' was not found.", id)
	}
	if err != nil {
		return Operation{}, err
	}
	op.Input, op.Result, op.Error = []byte(input), []byte(result), []byte(errJSON)
	op.LeaseUntil, op.NotBefore = fromNanos(leaseUntil), fromNanos(notBefore)
	op.StartedAt, op.EndedAt = fromNanos(started), fromNanos(ended)
	return op, nil
}

func (t queries) FinishOperation(ctx context.Context, op Operation) (bool, error) {
	res, err := t.q.ExecContext(ctx, t.rebind(`UPDATE operations
		SET status = ?, result = ?, error = ?, ended_at = ?, lease_owner = '', lease_until = 0
		WHERE id = ? AND status = ?`),
		op.Status, string(op.Result), string(op.Error), nanos(op.EndedAt), op.ID, StatusInProgress)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

func (t queries) IndexAssignment(ctx context.Context, a AssignmentIndex) error {
	if _, err := t.q.ExecContext(ctx, t.rebind(`DELETE FROM role_assignments WHERE id_key = ?`), key(a.ID)); err != nil {
		return err
	}
	_, err := t.q.ExecContext(ctx, t.rebind(`INSERT INTO role_assignments (id_key, principal_key, scope, role_id) VALUES (?, ?, ?, ?)`),
		key(a.ID), strings.ToLower(a.Principal), a.Scope, strings.ToLower(a.RoleID))
	return err
}

func (t queries) AssignmentsOf(ctx context.Context, principal string) ([]AssignmentIndex, error) {
	if err := storable(principal); err != nil {
		return nil, err
	}
	rows, err := t.q.QueryContext(ctx, t.rebind(`SELECT r.id, a.principal_key, a.scope, a.role_id
		FROM role_assignments a JOIN resources r ON r.id_key = a.id_key
		WHERE a.principal_key = ? ORDER BY a.id_key`), strings.ToLower(principal))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AssignmentIndex
	for rows.Next() {
		var a AssignmentIndex
		if err := rows.Scan(&a.ID, &a.Principal, &a.Scope, &a.RoleID); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (t queries) CountAssignmentsOfRole(ctx context.Context, role string) (int, error) {
	var n int
	err := t.q.QueryRowContext(ctx, t.rebind(`SELECT COUNT(*) FROM role_assignments WHERE role_id = ?`), strings.ToLower(role)).Scan(&n)
	return n, err
}

func (t queries) SetLabel(ctx context.Context, id, label, value string) error {
	if _, err := t.q.ExecContext(ctx, t.rebind(`DELETE FROM resource_labels WHERE id_key = ? AND label = ?`), key(id), label); err != nil {
		return err
	}
	if value == "" {
		return nil
	}
	// Only for a resource that exists: a label written after its resource
	// went would cling to a later resource of the same id.
	_, err := t.q.ExecContext(ctx, t.rebind(`INSERT INTO resource_labels (id_key, label, value)
		SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM resources WHERE id_key = ?)`),
		key(id), label, strings.ToLower(value), key(id))
	return err
}

func (t queries) CountLabeled(ctx context.Context, label, value string) (int, error) {
	var n int
	err := t.q.QueryRowContext(ctx, t.rebind(`SELECT COUNT(*) FROM resource_labels l JOIN resources r ON r.id_key = l.id_key
		WHERE l.label = ? AND l.value = ?`), label, strings.ToLower(value)).Scan(&n)
	return n, err
}

func (t queries) FindLabeled(ctx context.Context, label, value string) ([]string, error) {
	rows, err := t.q.QueryContext(ctx, t.rebind(`SELECT r.id FROM resource_labels l JOIN resources r ON r.id_key = l.id_key
		WHERE l.label = ? AND l.value = ? ORDER BY l.id_key`), label, strings.ToLower(value))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

func (t queries) IndexBackupInstance(ctx context.Context, b BackupInstanceIndex) error {
	// An upsert, not delete-then-insert: two writers of one instance on
	// PostgreSQL then serialize on the row instead of failing on the key.
	_, err := t.q.ExecContext(ctx, t.rebind(`INSERT INTO backup_instances (id_key, vault_key, datasource_key, policy_key, state)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id_key) DO UPDATE SET vault_key = excluded.vault_key, datasource_key = excluded.datasource_key,
			policy_key = excluded.policy_key, state = excluded.state`),
		key(b.ID), key(b.Vault), key(b.Datasource), key(b.Policy), b.State)
	return err
}

func (t queries) BackupInstancesOf(ctx context.Context, datasource string) ([]BackupInstanceIndex, error) {
	return t.backupInstances(ctx, `b.datasource_key = ?`, key(datasource))
}

func (t queries) BackupInstancesIn(ctx context.Context, vault string) ([]BackupInstanceIndex, error) {
	return t.backupInstances(ctx, `b.vault_key = ?`, key(vault))
}

func (t queries) backupInstances(ctx context.Context, where string, arg string) ([]BackupInstanceIndex, error) {
	rows, err := t.q.QueryContext(ctx, t.rebind(`SELECT r.id, b.vault_key, b.datasource_key, b.policy_key, b.state
		FROM backup_instances b JOIN resources r ON r.id_key = b.id_key
		WHERE `+where+` ORDER BY b.id_key`), arg)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []BackupInstanceIndex{}
	for rows.Next() {
		var b BackupInstanceIndex
		if err := rows.Scan(&b.ID, &b.Vault, &b.Datasource, &b.Policy, &b.State); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (t queries) SetTime(ctx context.Context, id, kind, owner string, at time.Time) error {
	if at.IsZero() {
		_, err := t.q.ExecContext(ctx, t.rebind(`DELETE FROM resource_times WHERE id_key = ? AND kind = ?`), key(id), kind)
		return err
	}
	_, err := t.q.ExecContext(ctx, t.rebind(`INSERT INTO resource_times (id_key, kind, owner_key, at_ns) VALUES (?, ?, ?, ?)
		ON CONFLICT (id_key, kind) DO UPDATE SET owner_key = excluded.owner_key, at_ns = excluded.at_ns`),
		key(id), kind, key(owner), at.UnixNano())
	return err
}

// where is the condition of q's kind, owner and window, on resource_times t.
func (q TimeQuery) where() ([]string, []any) {
	conds := []string{"t.kind = ?"}
	args := []any{q.Kind}
	if q.Owner != "" {
		conds = append(conds, "t.owner_key = ?")
		args = append(args, key(q.Owner))
	}
	if !q.From.IsZero() {
		conds = append(conds, "t.at_ns >= ?")
		args = append(args, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		conds = append(conds, "t.at_ns <= ?")
		args = append(args, q.To.UnixNano())
	}
	return conds, args
}

func (t queries) ListTimes(ctx context.Context, q TimeQuery) ([]Timed, error) {
	conds, args := q.where()
	order := "ASC"
	if q.Desc {
		order = "DESC"
	}
	if q.After != nil {
		op := ">"
		if q.Desc {
			op = "<"
		}
		conds = append(conds, "(t.at_ns "+op+" ? OR (t.at_ns = ? AND t.id_key "+op+" ?))")
		args = append(args, q.After.At.UnixNano(), q.After.At.UnixNano(), key(q.After.ID))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	args = append(args, limit)
	rows, err := t.q.QueryContext(ctx, t.rebind(`SELECT r.id, t.owner_key, t.at_ns FROM resource_times t JOIN resources r ON r.id_key = t.id_key
		WHERE `+strings.Join(conds, " AND ")+` ORDER BY t.at_ns `+order+`, t.id_key `+order+` LIMIT ?`), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Timed{}
	for rows.Next() {
		var tm Timed
		var ns int64
		if err := rows.Scan(&tm.ID, &tm.Owner, &ns); err != nil {
			return nil, err
		}
		tm.At = time.Unix(0, ns).UTC()
		out = append(out, tm)
	}
	return out, rows.Err()
}

func (t queries) CountTimes(ctx context.Context, q TimeQuery) (int, error) {
	conds, args := q.where()
	var n int
	err := t.q.QueryRowContext(ctx, t.rebind(`SELECT COUNT(*) FROM resource_times t JOIN resources r ON r.id_key = t.id_key
		WHERE `+strings.Join(conds, " AND ")), args...).Scan(&n)
	return n, err
}

func (t queries) GetTime(ctx context.Context, id, kind string) (time.Time, bool, error) {
	var ns int64
	err := t.q.QueryRowContext(ctx, t.rebind(`SELECT at_ns FROM resource_times WHERE id_key = ? AND kind = ?`), key(id), kind).Scan(&ns)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, err
	}
	return time.Unix(0, ns).UTC(), true, nil
}
