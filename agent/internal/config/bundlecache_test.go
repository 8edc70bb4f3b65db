package config

import (
	"strings"
	"testing"
)

func TestBundleCacheSize(t *testing.T) {
	tests := []struct {
		name, line string
		want       int64
		wantErr    string
	}{
		{"default", "", DefaultBundleCacheSize, ""},
		{"iec", `bundle_cache_size = "500MiB"`, 500 << 20, ""},
		{"off", `bundle_cache_size = "0"`, 0, ""},
		{"not a size", `bundle_cache_size = "lots"`, 0, "lots"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(strings.Replace(valid, "[app]", tt.line+"\n[app]", 1)))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.BundleCacheBytes(); got != tt.want {
				t.Errorf("BundleCacheBytes() = %d, want %d", got, tt.want)
			}
		})
	}
}
