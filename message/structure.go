package message

import (
	"strconv"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// node is one entity of a message's MIME tree, flattened in pre-order (the order in which the
// parts appear in the message), with its IMAP section number (RFC 3501 §6.4.5).
type node struct {
	single  *imap.BodyStructureSinglePart // nil for a multipart
	multi   *imap.BodyStructureMultiPart  // nil for a single part
	section string                        // "1.2"; "" for the top-level multipart
	parent  int                           // index of the parent node, -1 for the root

	mediaType  string // lower case
	params     map[string]string
	disp       string // lower-case disposition value, "" when absent
	filename   string
	encoding   string // lower case, "7bit" when absent
	children   []int
	isMsgBody  bool // the body of a message/rfc822 part: its results do not reach the parent
	text, html []int
	suppressed bool // a body candidate that lost in a multipart/alternative
}

// tree is a flattened, bounded view of a BODYSTRUCTURE.
type tree struct {
	nodes []node
}

// flatten walks bs iteratively (an explicit stack, so no recursion however deep the input)
// within the depth and part limits, recording "depth_exceeded" and "too_many_parts".
//
// Depth: the message is at depth 0, the parts of a multipart at depth d are at d+1, and the
// message inside a message/rfc822 part at depth d is at d+1. Parts: every entity except the
// top-level one counts, in the order they appear in the message.
func flatten(bs imap.BodyStructure, lim Limits, dec *decoder, d *defects) *tree {
	t := &tree{}
	if bs == nil {
		return t
	}
	type pending struct {
		bs      imap.BodyStructure
		parent  int
		section string // the part's own section, or for a message body the message's section
		depth   int
		msgBody bool // the top-level body or the body of a message/rfc822 part
	}
	stack := []pending{{bs: bs, parent: -1, msgBody: true}}
	parts := 0
	for len(stack) > 0 {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if p.parent >= 0 {
			parts++
			if parts > lim.Parts {
				d.add("too_many_parts")
				d.truncated = true
				break
			}
		}
		idx := len(t.nodes)
		n := node{parent: p.parent, isMsgBody: p.msgBody && p.parent >= 0}
		if p.parent >= 0 {
			t.nodes[p.parent].children = append(t.nodes[p.parent].children, idx)
		}
		var push []pending
		switch b := p.bs.(type) {
		case *imap.BodyStructureMultiPart:
			n.multi = b
			n.section = p.section
			n.mediaType = b.MediaType()
			if b.Extended != nil {
				n.params = dec.normParams(b.Extended.Params)
				if b.Extended.Disposition != nil {
					n.disp = dispValue(b.Extended.Disposition.Value)
				}
			}
			if len(b.Children) > 0 && p.depth+1 > lim.Depth {
				d.add("depth_exceeded")
				d.truncated = true
				break
			}
			for i, c := range b.Children {
				if c != nil {
					push = append(push, pending{bs: c, parent: idx, section: join(p.section, i+1), depth: p.depth + 1})
				}
			}
		case *imap.BodyStructureSinglePart:
			n.single = b
			n.section = p.section
			if p.msgBody {
				n.section = join(p.section, 1)
			}
			n.mediaType = strings.ToLower(b.Type) + "/" + strings.ToLower(b.Subtype)
			n.params = dec.normParams(b.Params)
			n.encoding = normEncoding(b.Encoding)
			var dispParams map[string]string
			if b.Extended != nil && b.Extended.Disposition != nil {
				n.disp = dispValue(b.Extended.Disposition.Value)
				dispParams = dec.normParams(b.Extended.Disposition.Params)
				if len(dispParams) == 0 {
					// A server that could not parse the disposition may hand it over whole.
					if _, ps, _ := parseMediaHeader(b.Extended.Disposition.Value); len(ps) > 0 {
						dispParams = dec.normParams(ps)
					}
				}
			}
			n.filename = filenameOf(dispParams, n.params)
			if isMessageType(n.mediaType) && b.MessageRFC822 != nil && b.MessageRFC822.BodyStructure != nil &&
				identityEncoding(n.encoding) {
				if p.depth+1 > lim.Depth {
					d.add("depth_exceeded")
					d.truncated = true
					break
				}
				push = append(push, pending{bs: b.MessageRFC822.BodyStructure, parent: idx, section: n.section,
					depth: p.depth + 1, msgBody: true})
			}
		}
		t.nodes = append(t.nodes, n)
		for i := len(push) - 1; i >= 0; i-- {
			stack = append(stack, push[i])
		}
	}
	t.selectBodies()
	return t
}

// filenameOf is a part's file name: Content-Disposition's filename, else Content-Type's name.
func filenameOf(dispParams, params map[string]string) string {
	if f := strings.TrimSpace(dispParams["filename"]); f != "" {
		return f
	}
	return strings.TrimSpace(params["name"])
}

// join appends a part number to a section.
func join(section string, n int) string {
	if section == "" {
		return strconv.Itoa(n)
	}
	return section + "." + strconv.Itoa(n)
}

// dispValue normalises a Content-Disposition value: the token before any parameters, lower case.
func dispValue(v string) string {
	v, _, _ = strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(v))
}

// isMessageType reports whether mt encapsulates a whole message (RFC 2046 §5.2.1, RFC 6532).
func isMessageType(mt string) bool {
	return mt == "message/rfc822" || mt == "message/global"
}

// identityEncoding reports whether enc leaves content as it is; only then is an encapsulated
// message parsed (RFC 2046 §5.2.1 forbids other encodings for message/rfc822).
func identityEncoding(enc string) bool {
	return enc == "7bit" || enc == "8bit" || enc == "binary"
}

// bodyCandidate reports whether a leaf is shown as a message body by a mail client: text/plain
// or text/html that is not marked as an attachment (disposition "attachment", or a file name
// without an explicit "inline").
func (n *node) bodyCandidate() bool {
	if n.single == nil || (n.mediaType != "text/plain" && n.mediaType != "text/html") {
		return false
	}
	if n.disp == "attachment" {
		return false
	}
	return n.filename == "" || n.disp == "inline"
}

// selectBodies decides, bottom-up, which leaves are the text and HTML bodies:
//   - multipart/alternative: the last alternative that has a text/plain body gives the text,
//     the last that has a text/html body gives the HTML (RFC 2046 §5.1.4: the last is the
//     richest); the bodies of the other alternatives are suppressed, not attachments;
//   - multipart/related: only the root (first) part gives bodies (RFC 2387);
//   - every other multipart: the bodies of all parts, in order;
//   - a message/rfc822 part gives none: its content is an attachment.
func (t *tree) selectBodies() {
	for i := len(t.nodes) - 1; i >= 0; i-- {
		n := &t.nodes[i]
		switch {
		case n.single != nil:
			if n.bodyCandidate() {
				if n.mediaType == "text/plain" {
					n.text = []int{i}
				} else {
					n.html = []int{i}
				}
			}
		case n.mediaType == "multipart/alternative":
			bestText, bestHTML := -1, -1
			for _, c := range n.children {
				if len(t.nodes[c].text) > 0 {
					bestText = c
				}
				if len(t.nodes[c].html) > 0 {
					bestHTML = c
				}
			}
			for _, c := range n.children {
				if c != bestText {
					t.suppress(t.nodes[c].text)
				}
				if c != bestHTML {
					t.suppress(t.nodes[c].html)
				}
			}
			if bestText >= 0 {
				n.text = t.nodes[bestText].text
			}
			if bestHTML >= 0 {
				n.html = t.nodes[bestHTML].html
			}
		case n.mediaType == "multipart/related":
			if len(n.children) > 0 {
				first := &t.nodes[n.children[0]]
				n.text, n.html = first.text, first.html
			}
		default:
			for _, c := range n.children {
				n.text = append(n.text, t.nodes[c].text...)
				n.html = append(n.html, t.nodes[c].html...)
			}
		}
		if n.isMsgBody {
			// The body of an encapsulated message is not the outer message's body.
			n.text, n.html = nil, nil
		}
	}
}

func (t *tree) suppress(leaves []int) {
	for _, l := range leaves {
		t.nodes[l].suppressed = true
	}
}

// bodies returns the node indices of the text and HTML bodies.
func (t *tree) bodies() (text, html []int) {
	if len(t.nodes) == 0 {
		return nil, nil
	}
	return t.nodes[0].text, t.nodes[0].html
}

// attachments lists every leaf that is neither a body nor a suppressed alternative, in order;
// message/rfc822 parts are listed, and so are the leaves inside them.
func (t *tree) attachments(d *defects) []Attachment {
	text, html := t.bodies()
	isBody := make(map[int]bool, len(text)+len(html))
	for _, i := range text {
		isBody[i] = true
	}
	for _, i := range html {
		isBody[i] = true
	}
	var out []Attachment
	for i := range t.nodes {
		n := &t.nodes[i]
		if n.single == nil {
			continue
		}
		if !knownEncoding(n.encoding) {
			d.add("unknown_encoding")
		}
		if isBody[i] || n.suppressed {
			continue
		}
		out = append(out, Attachment{
			Filename:    clean(n.filename),
			ContentType: clean(n.mediaType),
			Size:        int64(n.single.Size),
			Section:     n.section,
			Encoding:    clean(n.encoding),
		})
	}
	return out
}

// BodySections returns the IMAP sections holding the text/plain and the text/html bodies of a
// message with structure bs: the parts a mail client would display. In a multipart/alternative
// the plain and the HTML alternatives are chosen; parts with Content-Disposition "attachment"
// (or a file name and no "inline") are attachments, not bodies; parts of an attached
// message/rfc822 are never bodies. Fetch these (BODY.PEEK[section]) and hand them to Build as
// Pieces.Parts to get Text and HTML. The walk is bounded by DefaultLimits.
func BodySections(bs imap.BodyStructure) (text, html []string) {
	return bodySections(bs, DefaultLimits())
}

func bodySections(bs imap.BodyStructure, lim Limits) (text, html []string) {
	var d defects
	t := flatten(bs, lim, newDecoder(&d), &d)
	ti, hi := t.bodies()
	for _, i := range ti {
		text = append(text, t.nodes[i].section)
	}
	for _, i := range hi {
		html = append(html, t.nodes[i].section)
	}
	return text, html
}
