//go:build !unix

package failmem48

func allocSlots[K addrKey](n int) ([]slot[K], bool) { return make([]slot[K], n), false }

func freeSlots[K addrKey]([]slot[K], bool) {}
