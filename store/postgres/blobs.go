package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// BlobChunk is the size of the chunks a blob is stored in: a blob is written and read one chunk
// at a time, never whole in memory.
const BlobChunk = 256 << 10

// PutBlob stores what r yields under key, replacing a blob of that key, in one transaction, and
// returns its size.
func (s *Store) PutBlob(ctx context.Context, key string, r io.Reader) (int64, error) {
	var size int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		size = 0
		if _, err := tx.Exec(ctx, `DELETE FROM blob_chunks WHERE key = $1`, key); err != nil {
			return err
		}
		buf := make([]byte, BlobChunk)
		for seq := 0; ; seq++ {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO blob_chunks (key, seq, data) VALUES ($1, $2, $3)`, key, seq, buf[:n]); err != nil {
					return err
				}
				size += int64(n)
			}
			switch {
			case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
				return nil
			case rerr != nil:
				return fmt.Errorf("read: %w", rerr)
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("store blob %q: %w", key, err)
	}
	return size, nil
}

// ErrNoBlob: no blob is stored under the key.
var ErrNoBlob = errors.New("no such blob")

// OpenBlob returns a reader of the blob stored under key, which fetches one chunk at a time, or an
// error wrapping ErrNoBlob. A blob replaced or deleted while it is read ends the read with an error.
func (s *Store) OpenBlob(ctx context.Context, key string) (io.ReadCloser, error) {
	var chunks int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM blob_chunks WHERE key = $1`, key).Scan(&chunks); err != nil {
		return nil, fmt.Errorf("open blob %q: %w", key, err)
	}
	if chunks == 0 {
		return nil, fmt.Errorf("open blob %q: %w", key, ErrNoBlob)
	}
	return &blobReader{ctx: ctx, s: s, key: key, chunks: chunks}, nil
}

// DeleteBlobs deletes the blobs whose keys start with prefix and returns how many chunks went.
func (s *Store) DeleteBlobs(ctx context.Context, prefix string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM blob_chunks WHERE starts_with(key, $1)`, prefix)
	if err != nil {
		return 0, fmt.Errorf("delete blobs %q: %w", prefix, err)
	}
	return tag.RowsAffected(), nil
}

type blobReader struct {
	ctx    context.Context
	s      *Store
	key    string
	chunks int
	next   int    // next chunk to fetch
	cur    []byte // unread rest of the current chunk
}

func (b *blobReader) Read(p []byte) (int, error) {
	for len(b.cur) == 0 {
		if b.next >= b.chunks {
			return 0, io.EOF
		}
		err := b.s.pool.QueryRow(b.ctx, `SELECT data FROM blob_chunks WHERE key = $1 AND seq = $2`, b.key, b.next).Scan(&b.cur)
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("read blob %q: chunk %d is gone (the blob was replaced or deleted)", b.key, b.next)
		}
		if err != nil {
			return 0, fmt.Errorf("read blob %q: %w", b.key, err)
		}
		b.next++
	}
	n := copy(p, b.cur)
	b.cur = b.cur[n:]
	return n, nil
}

func (b *blobReader) Close() error { return nil }
