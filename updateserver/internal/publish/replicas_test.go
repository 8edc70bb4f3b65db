package publish_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/publish"
	"github.com/dropless/dropless/updateserver/internal/store"
	"github.com/dropless/dropless/updateserver/internal/store/storetest"
	"github.com/dropless/dropless/updateserver/internal/tufrepo"
)

// TestPublishThroughTwoReplicasAtOnce: two replicas (two Publishers on
// one store and one data directory) publish eight releases at once. Each
// publish succeeds (a replica that lost the race for a metadata version
// signs again on top of the winner's), and go-tuf's own updater, trusting
// only version 1 of the root, accepts the result and finds every release.
func TestPublishThroughTwoReplicasAtOnce(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, storetest.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	replica := func() *publish.Publisher {
		return &publish.Publisher{
			Store:      st,
			Repo:       tufrepo.Repo{Keys: tufrepo.KeyStore{Dir: filepath.Join(dir, "keys")}, Expiry: tufrepo.DefaultExpiry()},
			TargetsDir: filepath.Join(dir, "targets"),
			UploadsDir: filepath.Join(dir, "uploads"),
			Limits:     bundle.DefaultLimits(),
			MaxUpload:  1 << 30,
			Log:        slog.New(slog.DiscardHandler),
		}
	}
	a, b := replica(), replica()
	for _, d := range []string{a.TargetsDir, a.UploadsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Init(ctx); err != nil {
		t.Fatal(err)
	}
	root, err := st.MetadataVersion(ctx, tufrepo.RoleRoot, 1)
	if err != nil {
		t.Fatal(err)
	}

	const n = 8
	uploads := make([]protocol.Upload, n)
	for i := range n {
		up, err := a.Upload(ctx, bytes.NewReader(smallBundle(t, fmt.Sprintf("1.%d.0", i))), "release")
		if err != nil {
			t.Fatal(err)
		}
		uploads[i] = up
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		p := a
		if i%2 == 1 {
			p = b
		}
		wg.Go(func() {
			_, errs[i] = p.Publish(ctx, protocol.PublishRequest{UploadID: uploads[i].ID}, "release")
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("publish 1.%d.0: %v", i, err)
		}
	}

	srv := httptest.NewServer(metadataHandler(st))
	defer srv.Close()
	cfg, err := config.New(srv.URL+"/", root.Data)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LocalMetadataDir, cfg.LocalTargetsDir = t.TempDir(), t.TempDir()
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("go-tuf refuses the metadata: %v", err)
	}
	rels, err := st.ListReleases(ctx, store.ReleaseFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != n {
		t.Fatalf("%d releases stored, want %d", len(rels), n)
	}
	for _, r := range rels {
		if _, err := up.GetTargetInfo(r.Target); err != nil {
			t.Errorf("release %s is not in the signed targets: %v", r.Version, err)
		}
	}
}

var versioned = regexp.MustCompile(`^/([0-9]+)\.(root|targets|snapshot)\.json$`)

// metadataHandler serves the store's metadata as /tuf/metadata/ does.
func metadataHandler(st *store.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m store.Metadata
		var err error
		if r.URL.Path == "/timestamp.json" {
			m, err = st.LatestMetadata(r.Context(), "timestamp")
		} else if sub := versioned.FindStringSubmatch(r.URL.Path); sub != nil {
			v, _ := strconv.ParseInt(sub[1], 10, 64)
			m, err = st.MetadataVersion(r.Context(), sub[2], v)
		} else {
			err = store.ErrNotFound
		}
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(m.Data)
	})
}

// smallBundle packs a bundle of product acme with one file.
func smallBundle(t *testing.T, version string) []byte {
	t.Helper()
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "files"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(src, bundle.ManifestName), []byte("product = \"acme\"\nversion = \""+version+"\"\n"), 0o644)
	os.WriteFile(filepath.Join(src, "files", "VERSION"), []byte(version+"\n"), 0o644)
	var out bytes.Buffer
	if err := bundle.Pack(context.Background(), src, &out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
