package dispatch

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// Inline attachments travel from the watcher to the receiver without ever being held whole in
// memory, and without being stored in the outbox (the body is stored once):
//
//  1. The pipeline builds the payload with payload.InlineFromSpool: the attachment's
//     content_base64 holds a reference to the spooled content, and the spooled file is linked into
//     the job's spool directory (spool.Spool.Attach) before the job commits.
//  2. For each attempt the dispatcher splits the stored body at the references
//     (payload.SplitInline) and streams JSON prefix, base64 of the file read in chunks, JSON
//     suffix (bodyReader). The Standard Webhooks signature covers id.timestamp.body, so each
//     attempt first streams the same bytes through the HMACs (a second pass over the files), then
//     sends them with a Content-Length known in advance.

// segment is a piece of a request body: literal bytes, or a spooled file sent in base64.
type segment struct {
	lit  []byte
	file store.Blob // nil for a literal
	size int64      // octets of the file
}

// streamBody is a request body with spooled attachments.
type streamBody struct {
	segs []segment
	len  int64 // total octets on the wire
}

// spoolError is a spooled file that cannot be read; missing is permanent (the job dead-letters).
type spoolError struct {
	err     error
	missing bool
}

func (e *spoolError) Error() string { return e.err.Error() }
func (e *spoolError) Unwrap() error { return e.err }

// openBody splits a stored body at its spool references and opens the job's files; the caller
// closes the result. A reference is always a whole JSON string value, so the quotes stay in the
// literal segments and the base64 text goes between them.
func openBody(ctx context.Context, sp *spool.Spool, id string, body []byte) (_ *streamBody, err error) {
	pieces, err := payload.SplitInline(body)
	if err != nil {
		return nil, &spoolError{err: errors.New("attachment spool: malformed reference in the stored body"), missing: true}
	}
	b := &streamBody{}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	for _, pc := range pieces {
		if pc.Section == "" {
			b.add(segment{lit: pc.Literal})
			continue
		}
		sec := pc.Section
		if sp == nil {
			return nil, &spoolError{err: errors.New("attachment spool: the body refers to spooled attachments but no spool is configured"), missing: true}
		}
		f, err := sp.OpenFile(ctx, id, sec)
		if err != nil {
			return nil, &spoolError{err: fmt.Errorf("attachment spool: section %s: %w", sec, err), missing: errors.Is(err, fs.ErrNotExist)}
		}
		b.add(segment{file: f, size: f.Size()})
	}
	return b, nil
}

func (b *streamBody) add(s segment) {
	if s.file != nil {
		b.len += int64(base64.StdEncoding.EncodedLen(int(s.size)))
	} else {
		b.len += int64(len(s.lit))
	}
	b.segs = append(b.segs, s)
}

// close closes the files.
func (b *streamBody) close() {
	for _, s := range b.segs {
		if s.file != nil {
			s.file.Close()
		}
	}
}

// reader returns a fresh reader of the whole body. Readers share the open files (each reads
// with ReadAt), so several may exist, one after another or at once.
func (b *streamBody) reader() *bodyReader { return &bodyReader{b: b, left: b.len} }

// chunk is how many file octets are encoded at a time: a multiple of 3, so the base64 of the
// chunks concatenates into the base64 of the file.
const chunk = 48 << 10

// bodyReader streams a streamBody. It implements Len (remaining octets), which go-retryablehttp
// uses for Content-Length.
type bodyReader struct {
	b    *streamBody
	seg  int   // current segment
	off  int64 // offset in it (literal octets or file octets)
	out  []byte
	buf  []byte
	left int64
}

// Len returns the octets not yet read.
func (r *bodyReader) Len() int { return int(r.left) }

func (r *bodyReader) Read(p []byte) (int, error) {
	for len(r.out) == 0 {
		if r.seg >= len(r.b.segs) {
			return 0, io.EOF
		}
		s := r.b.segs[r.seg]
		if s.file == nil {
			r.out = s.lit[r.off:]
			r.seg, r.off = r.seg+1, 0
			continue
		}
		if r.off >= s.size {
			r.seg, r.off = r.seg+1, 0
			continue
		}
		if r.buf == nil {
			r.buf = make([]byte, chunk+base64.StdEncoding.EncodedLen(chunk))
		}
		in := r.buf[:min(int64(chunk), s.size-r.off)]
		if _, err := s.file.ReadAt(in, r.off); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the file shrank under us
			}
			return 0, &spoolError{err: fmt.Errorf("attachment spool: read: %w", err)}
		}
		r.off += int64(len(in))
		out := r.buf[chunk : chunk+base64.StdEncoding.EncodedLen(len(in))]
		base64.StdEncoding.Encode(out, in)
		r.out = out
	}
	n := copy(p, r.out)
	r.out = r.out[n:]
	r.left -= int64(n)
	return n, nil
}

// Close does nothing: the files belong to the streamBody. It lets net/http close the body.
func (r *bodyReader) Close() error { return nil }

// signatureOf is signature for a streamed body: it reads body once through one HMAC per key.
func signatureOf(keys [][]byte, id string, ts time.Time, body io.Reader) (string, error) {
	unix := strconv.FormatInt(ts.Unix(), 10)
	macs := make([]hash.Hash, len(keys))
	ws := make([]io.Writer, len(keys))
	for i, key := range keys {
		macs[i] = hmac.New(sha256.New, key)
		io.WriteString(macs[i], id+"."+unix+".")
		ws[i] = macs[i]
	}
	if _, err := io.Copy(io.MultiWriter(ws...), body); err != nil {
		return "", err
	}
	var b strings.Builder
	for i, mac := range macs {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return b.String(), nil
}

// requestBody is the body of one claimed job's attempts: the stored bytes as they are, or a
// stream over the job's spooled attachments.
type requestBody struct {
	plain  []byte
	stream *streamBody
}

// requestBody prepares the body of job j. For a streamed body it opens the job's spool files,
// which stay open (and readable however often) until close.
func (d *Dispatcher) requestBody(ctx context.Context, j store.Job) (*requestBody, error) {
	if !payload.HasInline(j.Body) {
		return &requestBody{plain: j.Body}, nil
	}
	sb, err := openBody(ctx, d.spool, j.ID, j.Body)
	if err != nil {
		return nil, err
	}
	return &requestBody{stream: sb}, nil
}

// raw is what go-retryablehttp takes as the body: the bytes, or a ReaderFunc that starts the
// stream afresh for every try (its reader has Len, so Content-Length is set).
func (b *requestBody) raw() any {
	if b.stream == nil {
		return b.plain
	}
	return retryablehttp.ReaderFunc(func() (io.Reader, error) { return b.stream.reader(), nil })
}

// signature returns the webhook-signature value of one try made at ts.
func (b *requestBody) signature(keys [][]byte, id string, ts time.Time) (string, error) {
	if b.stream == nil {
		return signature(keys, id, ts, b.plain), nil
	}
	return signatureOf(keys, id, ts, b.stream.reader())
}

// close releases the spool files.
func (b *requestBody) close() {
	if b.stream != nil {
		b.stream.close()
	}
}
