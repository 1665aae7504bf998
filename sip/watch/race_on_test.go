//go:build race

package watch

// raceDetector reports whether the tests run with the race detector, which
// makes everything several times slower.
const raceDetector = true
