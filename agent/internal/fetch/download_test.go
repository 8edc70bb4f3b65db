package fetch

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"
)

const bundlePath = "acme/acme-1.0.tar.gz"

// downloadSetup publishes a random bundle of n bytes and returns a
// refreshed client (on httpClient, if not nil) and the trusted target.
func downloadSetup(t *testing.T, n int, httpClient *http.Client) (*testRepo, *Client, *Target, []byte) {
	t.Helper()
	repo := newTestRepo(t)
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	repo.AddTarget(metadata.TARGETS, bundlePath, data, map[string]string{"product": "acme", "version": "1.0"})
	repo.Publish()
	c := repo.client(t.TempDir(), func(cfg *Config) { cfg.HTTPClient = httpClient })
	repo.mustRefresh(c)
	tg, err := c.Target(context.Background(), bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	return repo, c, tg, data
}

func assertNothingAt(t *testing.T, dst string) {
	t.Helper()
	for _, p := range []string{dst, dst + ".part"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists after a refused download (%v)", filepath.Base(p), err)
		}
	}
}

// TestDownloadRefusals: what the server sends in place of the trusted
// target is refused, nothing is left at dst nor in a .part, and reading
// stops one byte past the trusted length.
func TestDownloadRefusals(t *testing.T) {
	const size = 100_000
	tests := []struct {
		name     string
		hook     func(w http.ResponseWriter, r *http.Request, data []byte) bool
		edit     func(tg *Target) // changes the trusted target
		wantKind Kind
		wantMsg  string
		wantRead int64 // body bytes the client reads; -1: not checked
	}{
		{
			name: "altered target, same length",
			hook: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				evil := bytes.Clone(data)
				evil[size/2] ^= 0xff
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(evil))
				return true
			},
			wantKind: ErrHashMismatch,
			wantMsg:  "target acme/acme-1.0.tar.gz: sha256 mismatch",
			wantRead: -1,
		},
		{
			name: "endless target",
			hook: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				// No Content-Length: chunked, for ever.
				chunk := bytes.Repeat([]byte("A"), 32<<10)
				for {
					if _, err := w.Write(chunk); err != nil {
						return true
					}
				}
			},
			wantKind: ErrLengthExceeded,
			wantMsg:  "target acme/acme-1.0.tar.gz: server sent more than the trusted length 100000",
			wantRead: size + 1,
		},
		{
			name: "longer target announced",
			hook: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(append(bytes.Clone(data), "more"...)))
				return true
			},
			wantKind: ErrLengthExceeded,
			wantMsg:  "target acme/acme-1.0.tar.gz: server announced 100004 bytes from offset 0, more than the trusted length 100000",
			wantRead: 0, // refused on its Content-Length
		},
		{
			name: "truncated target, every time",
			hook: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				w.Write(data[:size/2]) // no Content-Length: a clean, early end
				return true
			},
			wantKind: ErrLengthMismatch,
			wantMsg:  "target acme/acme-1.0.tar.gz: server sent only 50000 of the trusted length 100000",
			wantRead: -1,
		},
		{
			name: "target missing",
			hook: func(w http.ResponseWriter, r *http.Request, data []byte) bool {
				http.NotFound(w, r)
				return true
			},
			wantKind: ErrNotFound,
			wantMsg:  "target acme/acme-1.0.tar.gz: not found at http://",
			wantRead: 0,
		},
		{
			name: "sha512 mismatch with a right sha256",
			edit: func(tg *Target) {
				tg.Hashes["sha512"] = strings.Repeat("00", 64)
			},
			wantKind: ErrHashMismatch,
			wantMsg:  "target acme/acme-1.0.tar.gz: sha512 mismatch",
			wantRead: size,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hc, counter := newCountingClient()
			repo, c, tg, _ := downloadSetup(t, size, hc)
			if tt.edit != nil {
				tt.edit(tg)
			}
			repo.SetHook(tt.hook)
			counter.read.Store(0)
			dst := filepath.Join(t.TempDir(), LocalName(tg.Path))
			_, err := c.Download(context.Background(), tg, dst)
			t.Logf("Download: %v", err)
			if !errors.Is(err, tt.wantKind) || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Fatalf("Download = %v, want %s starting %q", err, tt.wantKind, tt.wantMsg)
			}
			if Reason(err) != string(tt.wantKind) {
				t.Errorf("Reason = %q", Reason(err))
			}
			assertNothingAt(t, dst)
			if got := counter.read.Load(); tt.wantRead >= 0 && got != tt.wantRead {
				t.Errorf("client read %d body bytes, want %d", got, tt.wantRead)
			}
		})
	}
}

// TestDownloadResumes: a connection broken mid-download is resumed with a
// Range request from what the .part holds; a server that answers the Range
// request with the whole file (200) is followed from zero.
func TestDownloadResumes(t *testing.T) {
	const size, cut = 300_000, 120_000
	tests := []struct {
		name        string
		honourRange bool
		wantBytes   int64
	}{
		{"server honours Range", true, size},
		{"server ignores Range", false, cut + size},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, c, tg, data := downloadSetup(t, size, nil)
			var served atomic.Bool
			repo.SetHook(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
				if served.CompareAndSwap(false, true) {
					w.Header().Set("Content-Length", strconv.Itoa(len(body)))
					w.Write(body[:cut])
					w.(http.Flusher).Flush()
					panic(http.ErrAbortHandler) // drop the connection
				}
				if !tt.honourRange {
					r.Header.Del("Range")
				}
				return false // ServeContent, which honours Range
			})
			dst := filepath.Join(t.TempDir(), "bundle")
			res, err := c.Download(context.Background(), tg, dst)
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			if res.Resumes != 1 || res.Bytes != tt.wantBytes {
				t.Errorf("Result = %+v, want 1 resume and %d bytes", res, tt.wantBytes)
			}
			reqs := repo.Requests()
			last := reqs[len(reqs)-1]
			if want := "bytes=" + strconv.Itoa(cut) + "-"; last.Range != want {
				t.Errorf("resume request Range = %q, want %q", last.Range, want)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
				t.Fatalf("dst does not hold the target")
			}
			if _, err := os.Stat(dst + ".part"); !os.IsNotExist(err) {
				t.Errorf(".part left: %v", err)
			}
		})
	}
}

// TestDownloadStall: a server that stops sending without closing is given
// up on after the stall timeout and the download resumes.
func TestDownloadStall(t *testing.T) {
	const size, cut = 200_000, 50_000
	repo, c, tg, data := downloadSetup(t, size, nil)
	c.stallTimeout = 200 * time.Millisecond
	var served atomic.Bool
	repo.SetHook(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		if served.CompareAndSwap(false, true) {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body[:cut])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return true
		}
		return false
	})
	dst := filepath.Join(t.TempDir(), "bundle")
	res, err := c.Download(context.Background(), tg, dst)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if res.Resumes != 1 {
		t.Errorf("Result = %+v, want 1 resume", res)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatalf("dst does not hold the target")
	}
}

// TestDownloadFromEarlierPart: a .part an earlier call left is resumed; one
// whose bytes are wrong is thrown away and the target fetched again.
func TestDownloadFromEarlierPart(t *testing.T) {
	const size, have = 100_000, 40_000
	tests := []struct {
		name      string
		corrupt   bool
		wantRange string
		wantBytes int64
	}{
		{"good prefix", false, "bytes=40000-", size - have},
		{"corrupt prefix", true, "", size*2 - have},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo, c, tg, data := downloadSetup(t, size, nil)
			dst := filepath.Join(t.TempDir(), "bundle")
			prefix := bytes.Clone(data[:have])
			if tt.corrupt {
				prefix[10] ^= 1
			}
			if err := os.WriteFile(dst+".part", prefix, 0o644); err != nil {
				t.Fatal(err)
			}
			n := len(repo.Requests())
			res, err := c.Download(context.Background(), tg, dst)
			if err != nil {
				t.Fatalf("Download: %v", err)
			}
			if res.Bytes != tt.wantBytes {
				t.Errorf("Result = %+v, want %d bytes", res, tt.wantBytes)
			}
			reqs := repo.Requests()[n:]
			if reqs[0].Range != "bytes=40000-" || reqs[len(reqs)-1].Range != tt.wantRange {
				t.Errorf("requests %+v: want a resume from 40000 first, last with Range %q", reqs, tt.wantRange)
			}
			if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
				t.Fatalf("dst does not hold the target")
			}
		})
	}
}

// TestDownloadReplacesWrongFile: a dst that is not the target is not
// taken for it: it is removed and the target downloaded.
func TestDownloadReplacesWrongFile(t *testing.T) {
	repo, c, tg, data := downloadSetup(t, 10_000, nil)
	dst := filepath.Join(t.TempDir(), "bundle")
	if err := os.WriteFile(dst, bytes.Repeat([]byte("x"), len(data)), 0o644); err != nil {
		t.Fatal(err)
	}
	n := len(repo.Requests())
	res, err := c.Download(context.Background(), tg, dst)
	if err != nil || res.Reused || len(repo.Requests()) != n+1 {
		t.Fatalf("Download = %+v, %v; want one fresh download", res, err)
	}
	if got, _ := os.ReadFile(dst); !bytes.Equal(got, data) {
		t.Fatalf("dst does not hold the target")
	}
}

// TestDownloadCancel: cancelling the context mid-download returns at once,
// with nothing at dst.
func TestDownloadCancel(t *testing.T) {
	const size = 1 << 20
	repo, c, tg, _ := downloadSetup(t, size, nil)
	sent := make(chan struct{})
	repo.SetHook(func(w http.ResponseWriter, r *http.Request, body []byte) bool {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:size/4])
		w.(http.Flusher).Flush()
		close(sent)
		<-r.Context().Done() // hang until the client goes away
		return true
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dst := filepath.Join(t.TempDir(), "bundle")
	type outcome struct {
		err error
		at  time.Time
	}
	done := make(chan outcome, 1)
	go func() {
		_, err := c.Download(ctx, tg, dst)
		done <- outcome{err, time.Now()}
	}()
	<-sent
	// Let the client read some of what was sent before cancelling.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(dst + ".part"); err == nil && fi.Size() > 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	canceledAt := time.Now()
	cancel()
	var o outcome
	select {
	case o = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Download did not return after cancel")
	}
	if d := o.at.Sub(canceledAt); d > time.Second {
		t.Errorf("Download returned %v after cancel", d)
	}
	if !errors.Is(o.err, context.Canceled) || !errors.Is(o.err, ErrCanceled) || Reason(o.err) != "canceled" {
		t.Fatalf("Download = %v, want canceled", o.err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("dst exists after cancel: %v", err)
	}
}

func TestDownloadBadTarget(t *testing.T) {
	_, c, tg, _ := downloadSetup(t, 10, nil)
	dst := filepath.Join(t.TempDir(), "x")
	for name, edit := range map[string]func(*Target){
		"no known hash":   func(t *Target) { t.Hashes = map[string]string{"md5": "00"} },
		"bad hex":         func(t *Target) { t.Hashes["sha256"] = "zz" },
		"negative length": func(t *Target) { t.Length = -1 },
	} {
		bad := *tg
		bad.Hashes = map[string]string{"sha256": tg.Hashes["sha256"]}
		edit(&bad)
		if _, err := c.Download(context.Background(), &bad, dst); !errors.Is(err, ErrBadMetadata) {
			t.Errorf("%s: Download = %v, want %s", name, err, ErrBadMetadata)
		}
	}
}
