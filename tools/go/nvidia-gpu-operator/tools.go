//go:build tools

// Package tools only anchors the module; the binary is built by package path.
package tools
