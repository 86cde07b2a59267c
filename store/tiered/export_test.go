package tiered

// ErrReadPanicked is errReadPanicked, for the tests of package tiered_test.
var ErrReadPanicked = errReadPanicked
