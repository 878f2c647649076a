package iptables

import (
	"slices"
)

// Sorted comparison of a set's members with the desired ones. Both sides
// come in hash or map order; each is sorted (IPv4 by a radix sort on its
// 40-bit key, linear in the members) and the two are walked together.

// radixSort4 sorts a by key, using scratch (grown as needed) as the
// second buffer; the result is in a.
func radixSort4(a []member4, scratch *[]member4) {
	n := len(a)
	if n < 2 {
		return
	}
	if cap(*scratch) < n {
		*scratch = make([]member4, n)
	}
	src, dst := a, (*scratch)[:n]
	for shift := uint(0); shift < 40; shift += 8 {
		var count [256]int
		for _, m := range src {
			count[byte(m.k>>shift)]++
		}
		if count[byte(src[0].k>>shift)] == n {
			continue // every key has this digit: nothing to move
		}
		pos := 0
		for i, c := range count {
			count[i] = pos
			pos += c
		}
		for _, m := range src {
			d := byte(m.k >> shift)
			dst[count[d]] = m
			count[d]++
		}
		src, dst = dst, src
	}
	if &src[0] != &a[0] {
		copy(a, src)
	}
}

func (m member4) secs() uint32 { return m.t }
func (m member6) secs() uint32 { return m.t }

func cmpMember4(x, y member4) int {
	switch {
	case x.k < y.k:
		return -1
	case x.k > y.k:
		return 1
	}
	return 0
}

func cmpMember6(x, y member6) int { return cmpKey6(x.k, y.k) }

func cmpKey6(x, y memberKey) int {
	switch {
	case x.hi != y.hi:
		if x.hi < y.hi {
			return -1
		}
		return 1
	case x.lo != y.lo:
		if x.lo < y.lo {
			return -1
		}
		return 1
	default:
		return int(x.bits) - int(y.bits)
	}
}

func sortMembers6(a []member6) {
	slices.SortFunc(a, func(x, y member6) int { return cmpKey6(x.k, y.k) })
}

// secondsDiffer compares a kernel member's seconds left with the desired
// seconds left (0 on either side: permanent).
func secondsDiffer(kernel, want uint32, slack int64) bool {
	if want == 0 || kernel == 0 {
		return want != kernel
	}
	d := int64(kernel) - int64(want)
	return d > slack || d < -slack
}

// diffSorted walks kernel and want (both sorted by key) together and
// reports the desired keys the kernel lacks, the kernel keys not desired,
// and the keys whose time left differs (when timeouts is set). A key
// desired twice counts once.
func diffSorted[K interface{ secs() uint32 }](kernel, want []K, cmp func(x, y K) int, timeouts bool, slack int64) (missing, extra, changed []K) {
	i, j := 0, 0
	for i < len(kernel) || j < len(want) {
		if j > 0 && j < len(want) && cmp(want[j], want[j-1]) == 0 {
			j++
			continue
		}
		switch {
		case j == len(want):
			extra = append(extra, kernel[i])
			i++
		case i == len(kernel):
			missing = append(missing, want[j])
			j++
		default:
			switch c := cmp(kernel[i], want[j]); {
			case c < 0:
				extra = append(extra, kernel[i])
				i++
			case c > 0:
				missing = append(missing, want[j])
				j++
			default:
				if timeouts && secondsDiffer(kernel[i].secs(), want[j].secs(), slack) {
					changed = append(changed, want[j])
				}
				i++
				j++
			}
		}
	}
	return missing, extra, changed
}
