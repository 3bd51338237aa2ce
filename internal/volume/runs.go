package volume

// readRuns reads p at off, a run of blocks at a time, for the two views
// whose blocks move one way only, from "open" to "settled": a snapshot's
// blocks get a pre-image (settled: read the cow file, open: read the
// volume), a hydrating volume's blocks become local (settled: read the data
// file, open: read the backing). Whoever settles a block does so before it
// changes what the open source shows for it. So a run of open blocks is
// read in one call without locks, and any block found settled once that
// read has returned is read again from the settled source; one still open
// was not changed during the read. Runs of settled blocks are read in one
// call too. It returns the bytes read before the first error.
func readRuns(p []byte, off, bs int64, settled func(b int64) bool, readSettled, readOpen func(p []byte, off int64) error) (int, error) {
	end := off + int64(len(p))
	for pos := off; pos < end; {
		b := pos / bs
		isSettled := settled(b)
		last := b
		for (last+1)*bs < end && settled(last+1) == isSettled {
			last++
		}
		next := min((last+1)*bs, end)
		seg := p[pos-off : next-off]
		if isSettled {
			if err := readSettled(seg, pos); err != nil {
				return int(pos - off), err
			}
			pos = next
			continue
		}
		if err := readOpen(seg, pos); err != nil {
			return int(pos - off), err
		}
		for c := b; c <= last; c++ {
			if settled(c) { // settled during the read
				lo, hi := max(c*bs, pos), min((c+1)*bs, next)
				if err := readSettled(p[lo-off:hi-off], lo); err != nil {
					return int(pos - off), err
				}
			}
		}
		pos = next
	}
	return len(p), nil
}
