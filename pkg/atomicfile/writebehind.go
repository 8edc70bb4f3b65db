package atomicfile

import (
	"os"
)

// writeBehindStep is how much is written between two writeback requests;
// writeBehindLag is how far behind the write position the writeback is
// waited for, which bounds the file's dirty pages to about lag + step.
// (Variables so that tests can make them small.)
var (
	writeBehindStep int64 = 8 << 20
	writeBehindLag  int64 = 32 << 20
)

// WriteBehind writes sequentially to a file and, on Linux, has the kernel
// write what it holds to disk behind the write position as it goes
// (sync_file_range), so that the fsync that makes the file durable at the
// end has little left to do: the flush overlaps the writing instead of
// following it. It never replaces that fsync: on other systems it is a
// plain writer and the final fsync does all the work.
type WriteBehind struct {
	f     *os.File
	pos   int64 // the file offset the next Write writes at
	asked int64 // writeback requested for [.., asked)
	done  int64 // writeback waited for [.., done)
}

// NewWriteBehind writes to f from pos, the file's current offset.
func NewWriteBehind(f *os.File, pos int64) *WriteBehind {
	return &WriteBehind{f: f, pos: pos, asked: pos, done: pos}
}

// Write writes b at the file's offset, then requests writeback of every
// whole step written since the last request, and waits for the writeback
// of what lies more than the lag behind. Errors of the writeback itself
// are left to the final fsync, which reports them.
func (w *WriteBehind) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	w.Wrote(int64(n))
	return n, err
}

// Wrote accounts for n bytes written at the file's offset by other means
// (splice(2)), flushing behind them as Write does.
func (w *WriteBehind) Wrote(n int64) {
	w.pos += n
	if w.pos-w.asked >= writeBehindStep {
		startWriteback(w.f, w.asked, w.pos-w.asked)
		w.asked = w.pos
		if w.asked-w.done > writeBehindLag {
			end := w.asked - writeBehindLag
			waitWriteback(w.f, w.done, end-w.done)
			w.done = end
		}
	}
}

// Reset says the file now ends at pos and the next Write writes there
// (after a truncation and a seek).
func (w *WriteBehind) Reset(pos int64) {
	w.pos, w.asked, w.done = pos, pos, pos
}
