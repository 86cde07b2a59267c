// Package test holds cross-package integration tests: the broker started
// through the same wiring as cmd/server, talking to the strict vendor
// simulator over real loopback listeners (and, in the Redis tests, to real
// redis-server processes).
package test
