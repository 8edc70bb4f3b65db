package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/dropless/dropless/updateserver/internal/store"
)

// The TUF repository is public and read-only: the metadata verifies itself,
// so anyone may read it (and any mirror may serve it).
var versionedMetadataRe = regexp.MustCompile(`^([1-9][0-9]{0,18})\.(root|targets|snapshot)\.json$`)

// Cache policy: versioned metadata and hash-named targets never change, so
// caches may keep them forever; the unversioned entry points must be
// revalidated on every use (cheap, thanks to the ETag).
const (
	cacheImmutable   = "public, max-age=31536000, immutable"
	cacheRevalidate  = "public, no-cache"
	contentTypeJSON  = "application/json"
	contentTypeGzTar = "application/gzip"
)

func (s *Server) tufMetadata(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var (
		m     store.Metadata
		err   error
		cache = cacheImmutable
	)
	switch {
	case name == "timestamp.json" || name == "root.json":
		m, err = s.Store.LatestMetadata(r.Context(), strings.TrimSuffix(name, ".json"))
		cache = cacheRevalidate
	case versionedMetadataRe.MatchString(name):
		sub := versionedMetadataRe.FindStringSubmatch(name)
		v, perr := strconv.ParseInt(sub[1], 10, 64)
		if perr != nil {
			http.NotFound(w, r)
			return
		}
		m, err = s.Store.MetadataVersion(r.Context(), sub[2], v)
	default:
		http.NotFound(w, r)
		return
	}
	if errors.Is(err, store.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sum := sha256.Sum256(m.Data)
	h := w.Header()
	h.Set("Content-Type", contentTypeJSON)
	h.Set("Cache-Control", cache)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:16])+`"`)
	http.ServeContent(w, r, name, m.CreatedAt, bytes.NewReader(m.Data))
}

// targetFileRe is what a published target's file is called: its sha256,
// a dot, and the target's base name.
var targetFileRe = regexp.MustCompile(`^([0-9a-f]{64})\.[^/]+$`)

func (s *Server) tufTarget(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	dir, base, _ := cutLast(p, "/")
	sub := targetFileRe.FindStringSubmatch(base)
	if sub == nil || strings.Contains(dir, "..") {
		http.NotFound(w, r)
		return
	}
	// os.Root keeps the lookup inside the targets directory whatever the
	// path says.
	root, err := os.OpenRoot(s.Publisher.TargetsDir)
	if err != nil {
		s.fail(w, r, fmt.Errorf("open targets dir: %w", err))
		return
	}
	defer root.Close()
	f, err := root.Open(p)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentTypeGzTar)
	h.Set("Cache-Control", cacheImmutable)
	h.Set("ETag", `"`+sub[1]+`"`)
	http.ServeContent(w, r, base, fi.ModTime(), f)
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return "", s, false
}
