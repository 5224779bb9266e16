package payload

import (
	"time"

	"github.com/mailhook/mailhook/message"
)

// TestEvent returns the payload of the test event `mailhook webhooks test` sends to the webhook
// named webhook: Type is TypeTest, id is the event id (sent as webhook-id too), and no message
// was matched. The subject and text say so, so each format renders a message that reads as a
// test (a Slack, Discord or Teams message, a GitHub repository_dispatch with event_type
// "mailhook.test", a template's output); the json format is payload version 1 with "type":
// "mailhook.test".
func TestEvent(id, webhook string, at time.Time) *Payload {
	text := "This is a test event sent by `mailhook webhooks test " + webhook + "`: no mail was matched. " +
		"If you can read this, the webhook \"" + webhook + "\" reaches you."
	m := &message.Message{
		Subject:     "mailhook test event for webhook " + webhook,
		From:        message.Address{Name: "mailhook", Address: "mailhook@localhost.invalid"},
		Date:        at,
		Text:        text,
		TextFetched: true,
	}
	p := New(id, "", "", "", 0, 0, m, message.Auth{}, BodyText, 0)
	p.Type = TypeTest
	return p
}

// RenderTest returns the request body of a test event in the formatter's format. A GitHub
// repository_dispatch test carries event_type "mailhook.test", so it starts no workflow that
// waits for the configured event type.
func (f *Formatter) RenderTest(p *Payload) ([]byte, error) {
	if f.format == FormatGitHub {
		return marshalBody(githubBody(p, TypeTest))
	}
	return f.Render(p)
}
