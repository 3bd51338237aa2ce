package chunk

import "testing"

// permutations returns every ordering of xs.
func permutations(xs []packIndex) [][]packIndex {
	if len(xs) <= 1 {
		return [][]packIndex{xs}
	}
	var out [][]packIndex
	for i := range xs {
		rest := append(append([]packIndex{}, xs[:i]...), xs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]packIndex{xs[i]}, p...))
		}
	}
	return out
}

// TestApplyOrderIndependent: what the pack indexes say about a chunk does
// not depend on the order they are read in, all at once (a process
// starting) or one refresh at a time (a running one). The orders that
// matter are those in which the copy that is gone is read first.
func TestApplyOrderIndependent(t *testing.T) {
	d := Sum([]byte("the chunk"))
	var p1, p2, p3 PackID
	p1[0], p2[0], p3[0] = 1, 2, 3
	entry := func(id PackID, flags uint32) packIndex {
		return packIndex{packs: []packIndexPack{{id: id, entries: []packEntry{{d: d, off: 8, n: 100, plain: 60, flags: flags}}}}}
	}
	cases := []struct {
		name string
		xs   []packIndex
		want PackID
	}{
		{
			// Stored in p1, found corrupt there by another process, stored
			// again in p2 (the fresh-clone failure of
			// TestDamagedChunkIsQuarantinedAndHealed).
			name: "corrupt copy and a good one",
			xs:   []packIndex{entry(p1, 0), entry(p1, entryBad), entry(p2, 0)},
			want: p2,
		},
		{
			// Moved from p1 to p3 by another process's GC.
			name: "superseded pack",
			xs: []packIndex{entry(p1, 0), {
				packs:      []packIndexPack{{id: p3, entries: []packEntry{{d: d, off: 8, n: 100, plain: 60}}}},
				superseded: []PackID{p1},
			}},
			want: p3,
		},
	}
	listed := map[PackID]Object{p1: {Size: 200}, p2: {Size: 200}, p3: {Size: 200}}
	for _, c := range cases {
		for _, order := range permutations(c.xs) {
			for _, oneByOne := range []bool{false, true} {
				pk := newPackState(1 << 20)
				if oneByOne {
					for _, x := range order {
						pk.apply([]packIndex{x}, listed)
					}
				} else {
					pk.apply(order, listed)
				}
				loc, ok := pk.index[d]
				if !ok || loc.p.id != c.want {
					got := "nowhere"
					if ok {
						got = loc.p.id.String()
					}
					t.Errorf("%s, order %v, one by one %v: chunk indexed in %s, want %s", c.name, packOrder(order), oneByOne, got, c.want)
				}
			}
		}
	}
}

func packOrder(xs []packIndex) []string {
	var out []string
	for _, x := range xs {
		s := x.packs[0].id.String()[:2]
		if x.packs[0].entries[0].flags&entryBad != 0 {
			s += " bad"
		}
		if len(x.superseded) > 0 {
			s += " superseding"
		}
		out = append(out, s)
	}
	return out
}
