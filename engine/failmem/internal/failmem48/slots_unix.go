//go:build unix

package failmem48

import (
	"syscall"
	"unsafe"
)

// allocSlots maps n zeroed slots outside the Go heap. The table is
// pointer-free, so the GC has nothing to scan in it; kept on the heap it
// would still count toward the GC's target (twice the live heap), letting
// garbage grow by as much as the table — 75 MB at a million IPv6 addresses.
// mapped is false when the kernel refused and the heap was used.
func allocSlots[K addrKey](n int) (s []slot[K], mapped bool) {
	var one slot[K]
	size := int(unsafe.Sizeof(one)) * n
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil || len(b) < size {
		return make([]slot[K], n), false
	}
	return unsafe.Slice((*slot[K])(unsafe.Pointer(&b[0])), n), true
}

// freeSlots unmaps what allocSlots mapped.
func freeSlots[K addrKey](s []slot[K], mapped bool) {
	if !mapped || len(s) == 0 {
		return
	}
	var one slot[K]
	b := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), int(unsafe.Sizeof(one))*len(s))
	_ = syscall.Munmap(b)
}
