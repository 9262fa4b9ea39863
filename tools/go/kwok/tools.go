//go:build tools

// Package tools only anchors the module; binaries are built by package path.
package tools
