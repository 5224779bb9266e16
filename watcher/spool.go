package watcher

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/quotedprintable"
	"os"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailhook/mailhook/message"
	"github.com/mailhook/mailhook/spool"
)

// removeSpool deletes a message's spooled attachment content once the message is committed or
// abandoned: the Handler linked what it keeps.
func (w *Watcher) removeSpool(sp *spool.Message) {
	if err := sp.Remove(); err != nil {
		w.log.Warn("cannot remove attachment spool; the startup sweep will", "err", err)
	}
}

// spool fetches the content of chosen, the attachments of m the Handler's match ships inline
// (when Plan.Inline and Config.Incoming allow), streaming each part from the server into its own
// file through a transfer-encoding decoder (never holding a part in memory), and fsyncs the files and their directory before returning, so a Handler may commit
// jobs that refer to them.
//
// Every part is fetched once, with BODY.PEEK, in a single UID FETCH whose cost the budget must
// grant first (else errThrottled, and the message waits like any other). What is fetched of the
// message stays within MaxMessageSize: the chosen parts are taken in order while their
// BODYSTRUCTURE sizes fit in what the header and body parts left; the others are not fetched
// (the Handler ships them as metadata). A server literal larger than what is left drops the
// connection, as in fetch. It returns nil when nothing is to be fetched.
func (s *session) spool(ctx context.Context, f *fetched, m *message.Message, chosen []message.Attachment) (*spool.Message, error) {
	w := s.w
	cfg := &w.cfg
	if !cfg.Plan.Inline || cfg.Incoming == nil || f.structure == nil || len(chosen) == 0 {
		return nil, nil
	}
	// A message processed before (a rescan after a UIDVALIDITY change) reaches no Handler:
	// fetch nothing for it.
	if seen, err := w.st.Seen(ctx, m.Key); err == nil && seen {
		return nil, nil
	}
	room := cfg.MaxMessageSize - int64(len(f.header)) // what the size cap leaves for attachments
	for _, b := range f.parts {
		room -= int64(len(b))
	}
	left := room
	// Sizes as the message package read them from BODYSTRUCTURE, parts of encapsulated messages
	// included (partSizes does not descend into message/rfc822).
	sizes := map[string]int64{}
	want := map[string]message.Attachment{}
	opts := &imap.FetchOptions{UID: true}
	for _, a := range chosen {
		part, specifier, ok := parseSection(a.Section)
		if !ok || specifier != "" || a.Size < 0 || a.Size > left {
			continue
		}
		if _, dup := want[a.Section]; dup {
			continue
		}
		left -= a.Size
		sizes[a.Section] = a.Size
		want[a.Section] = a
		opts.BodySection = append(opts.BodySection, &imap.FetchItemBodySection{Part: part, Peek: true})
	}
	if len(want) == 0 {
		return nil, nil
	}
	sp, err := s.fetchSpool(ctx, f, opts, want, sizes, room)
	if err != nil {
		w.removeSpool(sp)
		if !errors.Is(err, errThrottled) {
			s.strike(ctx, f.uid, "attachment fetch failed")
		}
		return nil, err
	}
	return sp, nil
}

// fetchSpool runs the FETCH of spool. allow is what the size cap leaves for all the literals
// together: their BODYSTRUCTURE sizes fit in it, but a server may send more than it said.
func (s *session) fetchSpool(ctx context.Context, f *fetched, opts *imap.FetchOptions, want map[string]message.Attachment, sizes map[string]int64, allow int64) (*spool.Message, error) {
	w := s.w
	if ok, err := s.admit(ctx, partsCost(opts.BodySection, sizes)); !ok || err != nil {
		if err == nil {
			err = errThrottled
		}
		return nil, err
	}
	defer s.endFetch()
	sp, err := w.cfg.Incoming.Message(s.validity, f.uid)
	if err != nil {
		return nil, err
	}
	s.begin()
	s.settleAhead()
	cmd := s.c.Fetch(imap.UIDSetNum(imap.UID(f.uid)), opts)
	var readErr error
	for md := cmd.Next(); md != nil && readErr == nil; md = cmd.Next() {
		readErr = s.spoolMessage(md, f.uid, want, sp, &allow)
	}
	if errors.Is(readErr, errLiteralTooLarge) {
		s.conn.Close() // or cmd.Close would read the whole literal to drain it
	}
	err = cmd.Close()
	if readErr != nil {
		err = readErr
	}
	if err != nil {
		return sp, fmt.Errorf("uid fetch %d (attachments): %w", f.uid, err)
	}
	if err := sp.Sync(); err != nil {
		return sp, err
	}
	return sp, nil
}

// spoolMessage streams the body sections of one FETCH response into files.
func (s *session) spoolMessage(md *imapclient.FetchMessageData, uid uint32, want map[string]message.Attachment, sp *spool.Message, allow *int64) error {
	var got uint32
	for item := md.Next(); item != nil; item = md.Next() {
		switch it := item.(type) {
		case imapclient.FetchItemDataUID:
			got = uint32(it.UID)
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil || it.Section == nil || (got != 0 && got != uid) {
				continue
			}
			sec := sectionName(it.Section.Part)
			a, ok := want[sec]
			if !ok {
				continue
			}
			if n := it.Literal.Size(); n > *allow {
				return fmt.Errorf("%w: section %s is %d bytes, max_message_size leaves %d", errLiteralTooLarge, sec, n, *allow)
			}
			*allow -= it.Literal.Size()
			file, err := sp.Create(sec)
			if err != nil {
				return err
			}
			n, err := spoolPart(file, it.Literal, a.Encoding)
			var bad *decodeError
			switch {
			case errors.As(err, &bad):
				// Undecodable content: ship this one as metadata, keep the connection.
				s.w.log.Warn("attachment content is not valid "+a.Encoding+"; shipping metadata only",
					"uid", uid, "section", sec, "err", bad.err)
				sp.Discard(sec)
				if _, err := io.Copy(io.Discard, it.Literal); err != nil {
					return err
				}
			case err != nil:
				return err
			default:
				s.w.log.Debug("attachment spooled", "uid", uid, "section", sec, "bytes", n)
			}
		}
	}
	return nil
}

// decodeError is content that does not decode in its transfer encoding.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return "decode: " + e.err.Error() }

// sourceReader remembers whether an error came from the literal (the connection) rather than
// from the decoder above it.
type sourceReader struct {
	r   io.Reader
	err error
}

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// spoolPart writes the decoded content of literal to file, fsyncs and closes it. A decode
// failure is a *decodeError; the literal may then be left partly unread.
func spoolPart(file *os.File, literal io.Reader, encoding string) (n int64, err error) {
	defer func() {
		if cerr := file.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("attachment spool: %w", cerr)
		}
	}()
	src := &sourceReader{r: literal}
	n, err = io.Copy(file, transferDecoder(src, encoding))
	switch {
	case src.err != nil:
		return n, src.err
	case err != nil:
		var pe *os.PathError
		if errors.As(err, &pe) {
			return n, fmt.Errorf("attachment spool: %w", err)
		}
		return n, &decodeError{err: err}
	}
	if err := file.Sync(); err != nil {
		return n, fmt.Errorf("attachment spool: %w", err)
	}
	return n, nil
}

// transferDecoder undoes a Content-Transfer-Encoding (RFC 2045 §6) while streaming. base64 is
// decoded tolerantly: everything outside the alphabet (line breaks, spaces, padding) is skipped
// and a final partial quantum yields what it holds. Identity encodings, and encodings RFC 2045
// does not define, pass the octets through.
func transferDecoder(r io.Reader, encoding string) io.Reader {
	switch encoding {
	case "base64":
		return &lenientBase64{dec: base64.NewDecoder(base64.RawStdEncoding, &base64Alphabet{r: r})}
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	}
	return r
}

// base64Alphabet passes only the characters of the base64 alphabet.
type base64Alphabet struct{ r io.Reader }

func (a *base64Alphabet) Read(p []byte) (int, error) {
	for {
		n, err := a.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/' {
				p[k] = c
				k++
			}
		}
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// lenientBase64 ends the stream quietly at a dangling final character (a quantum of one
// character carries no whole octet).
type lenientBase64 struct{ dec io.Reader }

func (l *lenientBase64) Read(p []byte) (int, error) {
	n, err := l.dec.Read(p)
	var ce base64.CorruptInputError
	if errors.As(err, &ce) {
		err = io.EOF
	}
	return n, err
}
