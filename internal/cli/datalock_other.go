//go:build !unix

package cli

import "errors"

// lockDataDir needs flock; without it two gateways could share a data
// directory unnoticed, so the gateway does not start.
func lockDataDir(dir, what string) (func(), error) {
	return nil, errors.New("this platform cannot lock the data directory; tandem serve runs on Unix only")
}

func servingPid(dir string) (int, error) {
	return 0, errors.New("this platform cannot lock the data directory; tandem serve runs on Unix only")
}
