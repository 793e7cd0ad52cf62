// Package vt is test data for virtrun's harness tests: a function with a few
// branches, covered the same way in a guest and natively.
package vt

// Classify names the sign and size of n.
func Classify(n int) string {
	switch {
	case n < 0:
		return "negative"
	case n == 0:
		return "zero"
	case n < 10:
		return "small"
	default:
		return "large"
	}
}

// Sum adds the numbers, skipping negative ones.
func Sum(ns ...int) int {
	total := 0
	for _, n := range ns {
		if n < 0 {
			continue
		}
		total += n
	}
	return total
}
