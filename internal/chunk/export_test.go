package chunk

// WorthCompressing exposes the compression heuristic to the external tests.
var WorthCompressing = worthCompressing
