// Package suite is the code under test.
package suite

// Kind names the sign of n.
func Kind(n int) string {
	switch {
	case n < 0:
		return "negative"
	case n == 0:
		return "zero"
	default:
		return "positive"
	}
}
