package dispatch

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/mailhook/mailhook/payload"
	"github.com/mailhook/mailhook/spool"
	"github.com/mailhook/mailhook/store"
)

// DescribeInline returns a stored body for a person to read (`mailhook outbox show`): each
// reference to a spooled attachment becomes the JSON string "<attachment SEC: N bytes, spooled>",
// N being the size of the content the sender streams from sp (base64-encoded on the way), or
// "<attachment SEC: spooled file missing: …>". A body without references is returned as it is,
// and the internal reference never reaches the reader.
func DescribeInline(ctx context.Context, sp *spool.Spool, id string, body []byte) []byte {
	if !payload.HasInline(body) {
		return body
	}
	pieces, err := payload.SplitInline(body)
	if err != nil {
		return body
	}
	var out []byte
	for _, pc := range pieces {
		if pc.Section == "" {
			out = append(out, pc.Literal...)
			continue
		}
		desc := fmt.Sprintf("<attachment %s: spooled file missing>", pc.Section)
		if f, err := sp.OpenFile(ctx, id, pc.Section); sp != nil && err == nil {
			desc = fmt.Sprintf("<attachment %s: %s bytes, spooled>", pc.Section, thousands(f.Size()))
			f.Close()
		}
		// The literals keep the quotes around the reference: put the description's JSON between.
		var q bytes.Buffer
		enc := json.NewEncoder(&q)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(desc)
		out = append(out, bytes.Trim(bytes.TrimSpace(q.Bytes()), `"`)...)
	}
	return out
}

// thousands writes n with a comma between each group of three digits: 3412 → "3,412".
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// ExpandInline returns the body the dispatcher sends for a stored body of job id: each reference
// to a spooled attachment replaced by the base64 of its file in sp, read through the same stream
// an attempt sends (`mailhook test` prints it). It holds the whole body in memory: for showing one
// message, not for delivering.
func ExpandInline(ctx context.Context, sp *spool.Spool, id string, body []byte) ([]byte, error) {
	rb, err := (&Dispatcher{spool: sp}).requestBody(ctx, store.Job{ID: id, Body: body})
	if err != nil {
		return nil, err
	}
	defer rb.close()
	if rb.stream == nil {
		return rb.plain, nil
	}
	return io.ReadAll(rb.stream.reader())
}
