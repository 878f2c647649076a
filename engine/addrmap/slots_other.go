//go:build !unix

package addrmap

func allocSlots[K [4]byte | [16]byte, V any](n int) ([]slot[K, V], bool) {
	return make([]slot[K, V], n), false
}

func freeSlots[K [4]byte | [16]byte, V any]([]slot[K, V], bool) {}
