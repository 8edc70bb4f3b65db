package api

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/dropless/dropless/updateserver/internal/publish"
)

// spliceable tells whether an upload may take the spliced path: plain
// HTTP/1.x with a Content-Length, on a system where the publisher splices.
// Everything else (TLS, HTTP/2, chunked bodies) keeps the ordinary path.
func spliceable(r *http.Request) bool {
	return publish.CanSplice && r.TLS == nil && r.ProtoMajor == 1 && r.ContentLength > 0 && len(r.TransferEncoding) == 0
}

// uploadSpliced takes the connection over from the HTTP server so that
// the publisher can move the body from the socket to the staged file
// without copying it through the process (publish.UploadConn), then
// writes the answer, the same JSON as the ordinary path, itself and closes
// the connection. It returns false, having done nothing, when the
// connection cannot be taken over.
func (s *Server) uploadSpliced(w http.ResponseWriter, r *http.Request) bool {
	// Read the first bytes through the server: it answers "100 Continue"
	// first when the client waits for it (and hides the Expect header).
	first := make([]byte, 32<<10)
	k, _ := r.Body.Read(first[:min(int64(len(first)), r.ContentLength)])
	if k == 0 {
		return false // the ordinary path meets the same end of the body
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil { // not seen: plain HTTP/1.x hijacks
		s.uploadBody(w, r, io.MultiReader(bytes.NewReader(first[:k]), r.Body))
		return true
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	// What the server read past them is the body's too.
	rest := make([]byte, min(int64(brw.Reader.Buffered()), r.ContentLength-int64(k)))
	io.ReadFull(brw.Reader, rest)
	prefix := append(first[:k], rest...)
	up, err := s.Publisher.UploadConn(r.Context(), conn, prefix, r.ContentLength, uploadIdle, caller(r).Actor())
	// The answer's headers go to w's too, for the wrappers' records.
	cw := &connResponse{h: w.Header()}
	if err != nil {
		s.fail(cw, r, err)
	} else {
		writeJSON(cw, http.StatusCreated, up)
	}
	cw.WriteHeader(http.StatusOK)
	recordAnswer(w, cw.status, cw.body.Bytes())
	cw.send(conn, err != nil)
	return true
}

// recordAnswer tells the wrappers of w (metrics, the tests' API checker)
// the answer written on a hijacked connection.
func recordAnswer(w http.ResponseWriter, code int, body []byte) {
	for {
		if hw, ok := w.(interface{ HijackedAnswer(int, []byte) }); ok {
			hw.HijackedAnswer(code, body)
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}

// connResponse collects an answer to write on a hijacked connection.
type connResponse struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (c *connResponse) Header() http.Header { return c.h }

func (c *connResponse) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}

func (c *connResponse) Write(b []byte) (int, error) {
	c.WriteHeader(http.StatusOK)
	return c.body.Write(b)
}

// send writes the answer as an HTTP/1.1 response that closes the
// connection. When the body may not have been read to its end (failed),
// it then waits a little for the client to close, reading what it still
// sends, so that the client reads the answer rather than a reset.
func (c *connResponse) send(conn net.Conn, failed bool) {
	c.WriteHeader(http.StatusOK)
	c.h.Set("Content-Length", strconv.Itoa(c.body.Len()))
	c.h.Set("Connection", "close")
	c.h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", c.status, http.StatusText(c.status))
	c.h.Write(&b)
	b.WriteString("\r\n")
	b.Write(c.body.Bytes())
	conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := conn.Write(b.Bytes()); err != nil || !failed {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, conn)
}
