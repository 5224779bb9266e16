//go:build !failpoints

package failpoint

// Hit does nothing in a build without the failpoints tag.
func Hit(string) {}
