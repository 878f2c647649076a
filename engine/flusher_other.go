//go:build !linux

package engine

func lowerThreadPriority(int) {}
