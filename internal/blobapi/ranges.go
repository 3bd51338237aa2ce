package blobapi

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// rangeHeader returns the byte range a request names and the header it came
// from. x-ms-range wins over Range, as on Azure, because some HTTP stacks
// cannot send a Range header past 4 GiB.
func rangeHeader(r *http.Request) (name, value string, ok bool) {
	if v := r.Header.Get("x-ms-range"); v != "" {
		return "x-ms-range", v, true
	}
	if v := r.Header.Get("Range"); v != "" {
		return "Range", v, true
	}
	return "", "", false
}

// parseRange parses the two forms Azure accepts, bytes=start-end and
// bytes=start-. end is -1 for the open form. Suffix ranges (bytes=-n) and
// multiple ranges are not Azure's and are refused.
func parseRange(v string) (start, end int64, ok bool) {
	spec, found := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !found {
		return 0, 0, false
	}
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return 0, 0, false
	}
	start, ok = parseOffset(first)
	if !ok {
		return 0, 0, false
	}
	if last == "" {
		return start, -1, true
	}
	end, ok = parseOffset(last)
	if !ok || end < start {
		return 0, 0, false
	}
	return start, end, true
}

// parseOffset accepts plain decimal digits only, so "+1", " 1" or "0x10"
// never reach the disk as an offset.
func parseOffset(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// pageRanges turns what a Disk reports into what Get Page Ranges returns:
// whole pages, inside [lo, hi), sorted and merged. The disk may report
// ranges in any order, overlapping or at file-system granularity; clients
// may assume none of that.
func pageRanges(in []Range, lo, hi int64) []Range {
	out := make([]Range, 0, len(in))
	for _, r := range in {
		if r.Len <= 0 || r.Off >= hi {
			continue
		}
		// Written so that no Off and Len, however wild, overflow.
		end := hi
		if r.Off < 0 {
			end = min(r.Off+r.Len, hi)
		} else if r.Len < hi-r.Off {
			end = r.Off + r.Len
		}
		start := max(r.Off, 0)
		start = start / PageSize * PageSize
		// Rounded up to a page, or cut at hi where rounding up would
		// pass it (or overflow, for an end near the largest offset).
		if up := end + (PageSize-end%PageSize)%PageSize; up >= end && up < hi {
			end = up
		} else {
			end = hi
		}
		start, end = max(start, lo), min(end, hi)
		if start < end {
			out = append(out, Range{Off: start, Len: end - start})
		}
	}
	slices.SortFunc(out, func(a, b Range) int {
		switch {
		case a.Off < b.Off:
			return -1
		case a.Off > b.Off:
			return 1
		}
		return 0
	})
	merged := out[:0]
	for _, r := range out {
		if n := len(merged); n > 0 && r.Off <= merged[n-1].Off+merged[n-1].Len {
			last := &merged[n-1]
			last.Len = max(last.Len, r.Off+r.Len-last.Off)
			continue
		}
		merged = append(merged, r)
	}
	return merged
}
