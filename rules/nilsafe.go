package rules

import (
	"reflect"

	"github.com/expr-lang/expr/ast"

	"github.com/mailhook/mailhook/message"
)

// nilSafe makes member access on bounce, complaint and calendar nil-safe. They are nil for most
// messages, and expr fails a rule that reads a field of nil (and even `bounce?.kind == "hard"`,
// whose comparison is typed for strings): each member chain rooted at one of them becomes an
// optional chain that gives the zero value of its type, so `bounce.kind == "hard"` is false for a
// message that is no bounce, `len(bounce.recipients)` is 0, and `bounce == nil` keeps its meaning.
// Struct-valued links (calendar.organizer) give nil, and the next link makes that nil-safe too.
type nilSafe struct {
	chains map[ast.Node]*ast.MemberNode // the nodes this patcher made → the member chain inside
}

// nilSafeRoots are the Env fields that may be nil, by their pointer types.
var nilSafeRoots = map[reflect.Type]bool{
	reflect.TypeFor[*message.Bounce]():    true,
	reflect.TypeFor[*message.Complaint](): true,
	reflect.TypeFor[*message.Calendar]():  true,
}

func (v *nilSafe) Visit(node *ast.Node) {
	m, ok := (*node).(*ast.MemberNode)
	if !ok || m.Method {
		return
	}
	switch base := m.Node.(type) {
	case *ast.IdentifierNode:
		if !nilSafeRoots[base.Type()] {
			return
		}
	default:
		inner, ours := v.chains[base]
		if !ours {
			return
		}
		m.Node = inner
	}
	m.Optional = true
	var out ast.Node = &ast.ChainNode{Node: m}
	if zero := zeroNode(m.Type()); zero != nil {
		out = &ast.BinaryNode{Operator: "??", Left: out, Right: zero}
	}
	if v.chains == nil {
		v.chains = map[ast.Node]*ast.MemberNode{}
	}
	v.chains[out] = m
	ast.Patch(node, out)
}

// zeroNode is a literal of t's zero value, nil for types without one (structs).
func zeroNode(t reflect.Type) ast.Node {
	if t == nil {
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		return &ast.StringNode{}
	case reflect.Bool:
		return &ast.BoolNode{}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &ast.IntegerNode{}
	case reflect.Slice:
		return &ast.ArrayNode{}
	}
	return nil
}
