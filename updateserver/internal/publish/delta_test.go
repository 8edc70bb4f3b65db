package publish

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dropless/dropless/pkg/bundle"
	"github.com/dropless/dropless/pkg/delta"
	"github.com/dropless/dropless/pkg/protocol"
)

// publishDir packs a one-file bundle whose payload names version and
// publishes it; gzipLevel other than 0 recompresses the bundle, as a
// bundle made by another packer would be.
func publishDir(t *testing.T, p *Publisher, version string, gzipLevel int) protocol.Release {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "app"), bytes.Repeat([]byte("the same app binary "), 20000), 0o755)
	os.WriteFile(filepath.Join(dir, "files", "VERSION"), []byte(version), 0o644)
	var b bytes.Buffer
	if err := bundle.Pack(ctx, dir, &b); err != nil {
		t.Fatal(err)
	}
	if gzipLevel != 0 {
		var tarBytes, out bytes.Buffer
		delta.Gunzip(&tarBytes, &b)
		zw, _ := gzip.NewWriterLevel(&out, gzipLevel)
		zw.Write(tarBytes.Bytes())
		zw.Close()
		b = out
	}
	up, err := p.Upload(ctx, &b, "test")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := p.Publish(ctx, protocol.PublishRequest{UploadID: up.ID, Product: "acme", Version: version}, "test")
	if err != nil {
		t.Fatal(err)
	}
	return rel
}

func deltaFroms(t *testing.T, p *Publisher, version string) []string {
	t.Helper()
	r, err := p.Release(context.Background(), "acme", version)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range r.Deltas {
		if _, err := os.Stat(p.targetFile(d.Target, d.SHA256)); err != nil {
			t.Errorf("delta %s is signed but its file is missing: %v", d.Target, err)
		}
		out = append(out, d.From)
	}
	return out
}

// TestPublishMakesDeltasFromTheLine: a release gets a signed delta from
// each of the last DeltaBases releases of its major.minor line that are
// not yanked, none from another line, and none when its bundle was not
// packed by bundle.Pack.
func TestPublishMakesDeltasFromTheLine(t *testing.T) {
	p := newBenchPublisher(t)
	if err := p.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"} {
		publishDir(t, p, v, 0)
	}
	if _, err := p.Yank(context.Background(), "acme", "1.0.3", "bad", "test"); err != nil {
		t.Fatal(err)
	}
	rel := publishDir(t, p, "1.0.4", 0)
	if len(rel.Deltas) != 3 {
		t.Errorf("publish answered deltas %+v, want 3", rel.Deltas)
	}
	tests := []struct {
		version string
		want    []string
	}{
		{"1.0.0", nil},
		{"1.0.1", []string{"1.0.0"}},
		{"1.0.4", []string{"1.0.2", "1.0.1", "1.0.0"}}, // 1.0.3 is yanked
	}
	for _, tt := range tests {
		if got := deltaFroms(t, p, tt.version); !slices.Equal(got, tt.want) {
			t.Errorf("%s has deltas from %v, want %v", tt.version, got, tt.want)
		}
	}
	publishDir(t, p, "1.1.0", 0)
	if got := deltaFroms(t, p, "1.1.0"); len(got) != 0 {
		t.Errorf("1.1.0 (another line) has deltas from %v", got)
	}
	publishDir(t, p, "1.1.1", 9)
	if got := deltaFroms(t, p, "1.1.1"); len(got) != 0 {
		t.Errorf("1.1.1 (not packed by bundle.Pack) has deltas from %v", got)
	}
}
