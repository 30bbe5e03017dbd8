// Package e2e_test holds the end-to-end tests of issue 3: Bazel 4.2.3 builds
// and tests examples/go_service through a real hallmark-builder process, and
// the farm survives SIGKILL mid-build. They skip when bazel is not installed
// or cmd/hallmark-builder does not exist yet, and under -short.
package e2e_test
