// Package failmem48 is engine/failmem as it was at 5b184bf (the 48-byte
// record), kept only as the oracle of failmem's TestSameVerdictsAs48ByteRecord:
// the 40-byte record must decide as this one did. It must never be used by
// the daemon.
//
// One change from 5b184bf: a bucket window's first count sets its base
// (advance). Without it a base left at 0 more than 2^15 buckets behind the
// first failure never moved and the window counted that failure forever, a
// bug the 40-byte record fixes (failmem's TestFirstCountSetsWindowBase);
// the oracle has it fixed too so the comparison is about the layout.
package failmem48
