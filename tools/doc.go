// Package tools pins the versions of build tools that need a dependency set
// of their own (buf needs a newer protobuf than the service pins). Run them
// with `go tool -modfile=tools/go.mod <tool>`.
package tools
