package postgres

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/mailhook/mailhook/internal/testmail"
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
		if size == 0 {
			if !errors.Is(err, ErrNoBlob) {
				t.Fatalf("open an empty blob = %v; want ErrNoBlob (nothing stored)", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("blob of %d bytes read back as %d bytes, %v", size, len(got), err)
		}
	}
	if n, err := a.DeleteBlobs(ctx, "job/"); err != nil || n != 1+1+3 {
		t.Fatalf("deleted %d chunks, %v; want 5", n, err)
	}
	if _, err := b.OpenBlob(ctx, "job/att-b"); !errors.Is(err, ErrNoBlob) {
		t.Fatalf("open after delete = %v; want ErrNoBlob", err)
	}
}
