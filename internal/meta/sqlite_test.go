package meta_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/coffer-backup/coffer/internal/meta"
	"github.com/coffer-backup/coffer/internal/meta/metatest"
)

func TestSQLite(t *testing.T) {
	metatest.Run(t, func(t *testing.T) meta.Store {
		s, err := meta.Open(context.Background(), filepath.Join(t.TempDir(), "coffer.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestSQLiteReopenKeepsData(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "coffer.db")
	s, err := meta.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	r := meta.Resource{ID: "/subscriptions/s/resourceGroups/keep", Type: "Microsoft.Resources/resourceGroups",
		Name: "keep", Body: []byte(`{}`), UpdatedAt: metatestTime}
	if _, err := s.PutResource(ctx, r); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = meta.Open(ctx, path) // migrations run again and must be a no-op
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetResource(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
}
