package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailhook/mailhook/store"
)

// BlobChunk is the size of the chunks a blob is stored in: a blob is written and read one chunk
// at a time, never whole in memory.
const BlobChunk = 256 << 10

var _ store.Blobs = (*Store)(nil)

// PutBlob implements store.Blobs: it stores what r yields under key, replacing a blob of that key,
// in one transaction. An empty blob is one empty chunk.
func (s *Store) PutBlob(ctx context.Context, key string, r io.Reader) (int64, error) {
	var size int64
	err := s.withTx(ctx, func(tx pgx.Tx) error {
		size = 0
		if _, err := tx.Exec(ctx, `DELETE FROM blob_chunks WHERE key = $1`, key); err != nil {
			return err
		}
		at := dbTime(s.now())
		buf := make([]byte, BlobChunk)
		for seq := 0; ; seq++ {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 || seq == 0 {
				if _, err := tx.Exec(ctx, `INSERT INTO blob_chunks (key, seq, data, stored_at) VALUES ($1, $2, $3, $4)`,
					key, seq, buf[:n], at); err != nil {
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

// ErrNoBlob: no blob is stored under the key. It wraps fs.ErrNotExist.
var ErrNoBlob = fmt.Errorf("no such blob: %w", fs.ErrNotExist)

// OpenBlob implements store.Blobs: the blob's reads fetch one chunk at a time and keep the last
// one, so sequential reads fetch each chunk once. A blob replaced or deleted while it is read ends
// the read with an error.
func (s *Store) OpenBlob(ctx context.Context, key string) (store.Blob, error) {
	var chunks int
	var size int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(length(data)), 0) FROM blob_chunks WHERE key = $1`,
		key).Scan(&chunks, &size); err != nil {
		return nil, fmt.Errorf("open blob %q: %w", key, err)
	}
	if chunks == 0 {
		return nil, fmt.Errorf("open blob %q: %w", key, ErrNoBlob)
	}
	return &blobFile{ctx: ctx, s: s, key: key, size: size, seq: -1}, nil
}

// DeleteBlobs implements store.Blobs: it returns how many chunks went.
func (s *Store) DeleteBlobs(ctx context.Context, prefix string) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM blob_chunks WHERE starts_with(key, $1)`, prefix)
	if err != nil {
		return 0, fmt.Errorf("delete blobs %q: %w", prefix, err)
	}
	return tag.RowsAffected(), nil
}

// SweepJobBlobs implements store.Blobs: it returns how many chunks went.
func (s *Store) SweepJobBlobs(ctx context.Context, cut time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM blob_chunks b WHERE
EXISTS (SELECT 1 FROM jobs j WHERE j.id = split_part(b.key, '/', 1) AND j.state = $2)
OR (b.stored_at < $1 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = split_part(b.key, '/', 1)))`,
		dbTime(cut), store.StateDone)
	if err != nil {
		return 0, fmt.Errorf("sweep job blobs: %w", err)
	}
	return tag.RowsAffected(), nil
}

// blobFile is an open blob (store.Blob).
type blobFile struct {
	ctx  context.Context
	s    *Store
	key  string
	size int64

	mu  sync.Mutex
	seq int    // the chunk in cur; -1 for none
	cur []byte // chunk seq
}

func (b *blobFile) Size() int64 { return b.size }

func (b *blobFile) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for n < len(p) {
		if off >= b.size {
			return n, io.EOF
		}
		seq := int(off / BlobChunk)
		chunk, err := b.chunk(seq)
		if err != nil {
			return n, err
		}
		start := off - int64(seq)*BlobChunk
		if start >= int64(len(chunk)) {
			return n, fmt.Errorf("read blob %q: chunk %d is short (the blob was replaced)", b.key, seq)
		}
		k := copy(p[n:], chunk[start:])
		n, off = n+k, off+int64(k)
	}
	return n, nil
}

// chunk returns chunk seq, fetching it unless it is the one kept.
func (b *blobFile) chunk(seq int) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq == b.seq {
		return b.cur, nil
	}
	var data []byte
	err := b.s.pool.QueryRow(b.ctx, `SELECT data FROM blob_chunks WHERE key = $1 AND seq = $2`, b.key, seq).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read blob %q: chunk %d is gone (the blob was replaced or deleted)", b.key, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("read blob %q: %w", b.key, err)
	}
	b.seq, b.cur = seq, data
	return data, nil
}

func (b *blobFile) Close() error { return nil }
