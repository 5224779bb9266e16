package store

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"strconv"
)

// jobIDAlphabet is the RFC 4648 base32 alphabet in lower case.
const jobIDAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// JobID returns the stable id of the job for action number action (its index in the rule's action
// list) of rule on message (account, mailbox, uidvalidity, uid). It is the webhook-id and the
// payload's id, so it must never change for the same inputs, across retries, restarts and versions.
//
// The id is "msg_" followed by the lower-case, unpadded base32 (RFC 4648 §6) of the first 16 bytes of
// SHA-256 over the six fields in that order, each written as a 4-byte big-endian length followed by
// its bytes (strings as UTF-8, integers in decimal ASCII). The length prefixes keep ("ab","c") and
// ("a","bc") apart. 128 bits give 26 characters.
func JobID(account, mailbox string, uidvalidity, uid uint32, rule string, action int) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(account))
	field([]byte(mailbox))
	field(strconv.AppendUint(nil, uint64(uidvalidity), 10))
	field(strconv.AppendUint(nil, uint64(uid), 10))
	field([]byte(rule))
	field(strconv.AppendInt(nil, int64(action), 10))
	sum := h.Sum(nil)
	enc := base32.NewEncoding(jobIDAlphabet).WithPadding(base32.NoPadding)
	return "msg_" + enc.EncodeToString(sum[:16])
}

// ReplayJobID returns the id of the replay named replay of the job whose id is original: "msg_"
// and the lower-case, unpadded base32 of the first 16 bytes of SHA-256 over the fields "replay",
// replay and original, each written as a 4-byte big-endian length followed by its bytes. The
// leading field keeps replay ids apart from JobID's, and the id differs from the original's, so a
// receiver that deduplicates on webhook-id delivers the replay; yet it is the same for the same
// replay name, so running one replay twice queues nothing twice.
func ReplayJobID(replay, original string) string {
	h := sha256.New()
	for _, f := range []string{"replay", replay, original} {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	sum := h.Sum(nil)
	return "msg_" + base32.NewEncoding(jobIDAlphabet).WithPadding(base32.NoPadding).EncodeToString(sum[:16])
}
