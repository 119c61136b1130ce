//go:build race

package harness

// raceEnabled: this test binary runs under the race detector, so BuildCaddy
// builds Caddy with -race too.
const raceEnabled = true
