//go:build tools

// Package tools only anchors the module; the binaries are built by package path.
package tools
