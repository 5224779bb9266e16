package dispatch

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks request headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

const (
	secretPrefix   = "whsec_"
	minSecretBytes = 24
	maxSecretBytes = 64
)

// ParseSecret decodes a Standard Webhooks symmetric secret: "whsec_" followed by the standard
// base64 encoding (padded or not) of 24 to 64 bytes. It returns the key bytes. Its errors never
// contain the secret or any part of it.
func ParseSecret(s string) ([]byte, error) {
	enc, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return nil, errors.New("webhook secret: want whsec_ followed by base64")
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		key, err = base64.RawStdEncoding.DecodeString(enc)
	}
	if err != nil {
		// The decoder's error holds only an offset, but leave it out all the same.
		return nil, errors.New("webhook secret: the part after whsec_ is not valid base64")
	}
	if len(key) < minSecretBytes || len(key) > maxSecretBytes {
		return nil, fmt.Errorf("webhook secret: decodes to %d bytes, want %d to %d",
			len(key), minSecretBytes, maxSecretBytes)
	}
	return key, nil
}

// signature returns the value of the webhook-signature header for one attempt: for every key,
// "v1," followed by the base64 HMAC-SHA256 of id "." timestamp "." body, separated by spaces
// (Standard Webhooks, "Signature scheme"; several keys while rotating secrets).
func signature(keys [][]byte, id string, ts time.Time, body []byte) string {
	var b strings.Builder
	unix := strconv.FormatInt(ts.Unix(), 10)
	for i, key := range keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(unix))
		mac.Write([]byte{'.'})
		mac.Write(body)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("v1,")
		b.WriteString(base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return b.String()
}
