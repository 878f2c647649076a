//go:build unix

package addrmap

import (
	"syscall"
	"unsafe"
)

// allocSlots maps n zeroed slots outside the Go heap (the slots hold no
// pointer); mapped is false when the kernel refused and the heap was used.
func allocSlots[K [4]byte | [16]byte, V any](n int) (s []slot[K, V], mapped bool) {
	var one slot[K, V]
	size := int(unsafe.Sizeof(one)) * n
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil || len(b) < size {
		return make([]slot[K, V], n), false
	}
	return unsafe.Slice((*slot[K, V])(unsafe.Pointer(&b[0])), n), true
}

// freeSlots unmaps what allocSlots mapped.
func freeSlots[K [4]byte | [16]byte, V any](s []slot[K, V], mapped bool) {
	if !mapped || len(s) == 0 {
		return
	}
	var one slot[K, V]
	_ = syscall.Munmap(unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), int(unsafe.Sizeof(one))*len(s)))
}
