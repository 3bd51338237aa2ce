package meta_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/meta/metatest"
	"github.com/coffer-backup/coffer/internal/testenv"
)

var metatestTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// PostgresURL returns the server the test script started, or skips the test
// when there is none and the run does not require one.
func postgresURL(t *testing.T) string {
	return testenv.Postgres(t)
}

func TestPostgres(t *testing.T) {
	base := postgresURL(t)
	n := 0
	metatest.Run(t, func(t *testing.T) meta.Store {
		n++
		return freshPostgres(t, base, fmt.Sprintf("meta_%d_%d", time.Now().UnixNano()%1e9, n))
	})
}

// freshPostgres creates an empty database for one test and drops it after.
func freshPostgres(t *testing.T, base, name string) meta.Store {
	t.Helper()
	ctx := context.Background()
	admin, err := meta.Open(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.DB().ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(base, "/")
	q := ""
	if j := strings.Index(base[i:], "?"); j >= 0 {
		q = base[i+j:]
	}
	s, err := meta.Open(ctx, base[:i+1]+name+q)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		a, err := meta.Open(ctx, base)
		if err == nil {
			a.DB().ExecContext(ctx, "DROP DATABASE IF EXISTS "+name)
			a.Close()
		}
	})
	return s
}
