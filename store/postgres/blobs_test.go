package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/mailhook/mailhook/internal/testmail"
	"github.com/mailhook/mailhook/store"
)

func TestBlobs(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	dsn := pg.NewDatabase(t)
	ctx := context.Background()
	a := openStore(t, dsn, testOpts{replica: "a"})
	b := openStore(t, dsn, testOpts{replica: "b"})
	for _, size := range []int{0, 1, BlobChunk, 2*BlobChunk + 17} {
		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		for i := range data {
			data[i] = byte(rng.IntN(256))
		}
		key := "job/att-" + string(rune('a'+size%26))
		n, err := a.PutBlob(ctx, key, bytes.NewReader(data))
		if err != nil || n != int64(size) {
			t.Fatalf("put %d bytes = %d, %v", size, n, err)
		}
		r, err := b.OpenBlob(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if r.Size() != int64(size) {
			t.Errorf("blob of %d bytes opened with size %d", size, r.Size())
		}
		got, err := io.ReadAll(io.NewSectionReader(r, 0, r.Size()))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("blob of %d bytes read back as %d bytes, %v", size, len(got), err)
		}
		// Reads at any offset, across a chunk boundary, as the webhook sender makes them.
		if size > BlobChunk {
			p := make([]byte, 100)
			if n, err := r.ReadAt(p, BlobChunk-50); n != 100 || err != nil || !bytes.Equal(p, data[BlobChunk-50:BlobChunk+50]) {
				t.Errorf("ReadAt across a chunk boundary = %d, %v", n, err)
			}
			if n, err := r.ReadAt(p, int64(size)-10); n != 10 || !errors.Is(err, io.EOF) {
				t.Errorf("ReadAt past the end = %d, %v; want 10, EOF", n, err)
			}
		}
	}
	if n, err := a.DeleteBlobs(ctx, "job/"); err != nil || n != 1+1+1+3 {
		t.Fatalf("deleted %d chunks, %v; want 6", n, err)
	}
	if _, err := b.OpenBlob(ctx, "job/att-b"); !errors.Is(err, ErrNoBlob) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open after delete = %v; want ErrNoBlob, fs.ErrNotExist", err)
	}
}

// SweepJobBlobs removes the blobs of done jobs at once, those of jobs not in the outbox once
// stored before the cut, and keeps those of jobs still to deliver.
func TestSweepJobBlobs(t *testing.T) {
	pg := testmail.StartPostgres(t, testmail.PostgresOptions{})
	s := openStore(t, pg.NewDatabase(t), testOpts{replica: "a"})
	ctx := context.Background()
	if _, err := s.Enqueue(ctx, []store.Job{{ID: "done1", Kind: store.KindWebhook, Target: "t", Body: []byte("{}")},
		{ID: "pending1", Kind: store.KindWebhook, Target: "t", Body: []byte("{}")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE jobs SET state = 'done' WHERE id = 'done1'`); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"done1/2", "pending1/2", "orphan/2"} {
		if _, err := s.PutBlob(ctx, key, bytes.NewReader([]byte(key))); err != nil {
			t.Fatal(err)
		}
	}
	exists := func(key string) bool {
		_, err := s.OpenBlob(ctx, key)
		return err == nil
	}
	if n, err := s.SweepJobBlobs(ctx, time.Now().Add(-time.Hour)); err != nil || n != 1 || exists("done1/2") || !exists("orphan/2") {
		t.Fatalf("sweep with a cut an hour ago: %d, %v; want only the done job's blob gone", n, err)
	}
	if n, err := s.SweepJobBlobs(ctx, time.Now().Add(time.Hour)); err != nil || n != 1 || exists("orphan/2") || !exists("pending1/2") {
		t.Fatalf("sweep with a cut past the orphan: %d, %v; want the orphan gone, the pending job's blob kept", n, err)
	}
}
