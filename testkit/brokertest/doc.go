// Package brokertest is the test kit of the project's tests: one way to
// start each thing a test needs, so the tests share one tested copy of
// it (docs/design.md, What each package owns).
//
//   - an in-process broker: the vendor simulator, a configuration that
//     points at it, and app started on loopback ports
//     (StartSim, SimConfig, StartBroker, Launch);
//   - the server binary, built once per test process, with -race when the
//     test binary has it (ServerBinary);
//   - a process launcher: start, stop, SIGKILL, and SIGSTOP/SIGCONT that
//     return once the process is stopped or running again, output kept in
//     a file and printed when the test fails (Proc, Server);
//   - free loopback ports (FreePort) and one poller (Eventually, Poll).
//
// Redis servers come from testkit/redistest, which this package
// builds on (its FreePort and FreezeProcess are the ones used here).
package brokertest
