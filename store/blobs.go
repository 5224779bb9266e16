package store

import (
	"context"
	"io"
	"time"
)

// Blobs keeps the octets of inline attachments where every process sharing the store reads them
// (a store shared by replicas), so any replica can deliver any job: written and read in chunks,
// never whole in memory. A job's blobs are keyed JOBID/SECTION.
type Blobs interface {
	// PutBlob stores what r yields under key (replacing a blob of that key) and returns its size.
	PutBlob(ctx context.Context, key string, r io.Reader) (int64, error)
	// OpenBlob opens the blob of key for reading at any offset, or returns an error wrapping
	// fs.ErrNotExist. ctx bounds the reads.
	OpenBlob(ctx context.Context, key string) (Blob, error)
	// DeleteBlobs deletes the blobs whose keys start with prefix and returns how many went (in
	// the backend's units).
	DeleteBlobs(ctx context.Context, prefix string) (int64, error)
	// SweepJobBlobs deletes the blobs of jobs that are done, and of jobs not in the outbox when
	// the blob was stored before cut (a job's blobs are stored just before it commits).
	SweepJobBlobs(ctx context.Context, cut time.Time) (int64, error)
}

// Blob is one stored blob open for reading: any number of readers may read it at once.
type Blob interface {
	io.ReaderAt
	io.Closer
	Size() int64
}
