package config

import (
	"reflect"
	"testing"
)

// A section that is a map (such as a rule's named extractions) has ${NAME} expanded in its values
// like every other string, and its entries are named by their key in errors.
func TestWalkStringsMaps(t *testing.T) {
	type item struct {
		Name  string            `mapstructure:"name"`
		Named map[string]string `mapstructure:"named"`
		Items map[string]struct {
			Value string `mapstructure:"value"`
		} `mapstructure:"items"`
	}
	v := struct {
		List []item `mapstructure:"list"`
	}{List: []item{{Name: "r", Named: map[string]string{"b": "${B}", "a": "x${A}"},
		Items: map[string]struct {
			Value string `mapstructure:"value"`
		}{"k": {Value: "${A}"}}}}}
	var fields []string
	walkStrings(reflect.ValueOf(&v).Elem(), "", func(field string, s reflect.Value) {
		fields = append(fields, field)
		out, err := expandString(s.String(), cfgEnv(map[string]string{"A": "1", "B": "2"}))
		if err != nil {
			t.Fatal(err)
		}
		s.SetString(out)
	})
	want := []string{`list[0] "r".name`, `list[0] "r".named.a`, `list[0] "r".named.b`, `list[0] "r".items.k.value`}
	if !reflect.DeepEqual(fields, want) {
		t.Errorf("fields %q, want %q", fields, want)
	}
	if got := v.List[0].Named; got["a"] != "x1" || got["b"] != "2" {
		t.Errorf("map values %q, want expanded", got)
	}
	if got := v.List[0].Items["k"].Value; got != "1" {
		t.Errorf("map of structs: value %q, want expanded", got)
	}
}
