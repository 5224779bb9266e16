package reply

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strings"

	"github.com/mailhook/mailhook/message"
)

// SignatureHeader carries the HMAC by which mailhook recognises a reply it sent: a message the
// bridge itself sent must never trigger a webhook or an auto-reply, and only this mark says so
// with certainty. LoopHeader and a Message-ID in the reply ledger are public once a reply has
// been received — anyone may copy them into their own mail — so on those alone replies are
// suppressed but webhooks still go out.
const SignatureHeader = "X-Mailhook-Signature"

// Sign returns the SignatureHeader value of a reply: "v1=" and the HMAC-SHA256 under key of its
// Message-ID, its recipient and its subject. An outsider who received one of our replies can copy
// its Message-ID and header into a message of their own, but not to another recipient or under
// another subject without the key: such a message is not taken for ours.
func Sign(key []byte, messageID, to, subject string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(strings.ToLower(strings.TrimSpace(messageID)) + "\n" +
		strings.ToLower(strings.TrimSpace(to)) + "\n" + subject))
	return "v1=" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// SignedByUs reports whether m carries a SignatureHeader that key signed for its Message-ID,
// first To address and subject: a reply this installation sent. A nil key recognises nothing.
func SignedByUs(key []byte, m *message.Message) bool {
	if len(key) == 0 || m == nil || len(m.To) == 0 || m.MessageID == "" {
		return false
	}
	want := Sign(key, m.MessageID, m.To[0].Address, m.Subject)
	for _, v := range m.HeaderValues(SignatureHeader) {
		if hmac.Equal([]byte(strings.TrimSpace(v)), []byte(want)) {
			return true
		}
	}
	return false
}
