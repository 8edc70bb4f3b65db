package main

import "testing"

// TestPackageVersion: every form git describe prints becomes a version
// dpkg and rpm accept (no '-', starting with a digit), ordered as the
// releases are; anything else is refused.
func TestPackageVersion(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "v1.2.3", want: "1.2.3"},
		{in: "1.2.3", want: "1.2.3"},
		{in: "v1.2.3-rc.1", want: "1.2.3~rc.1"},
		{in: "v1.2.3-dirty", want: "1.2.3+dirty"},
		{in: "v0.3.0-5-gabc1234", want: "0.3.0+git5.abc1234"},
		{in: "v0.3.0-5-gabc1234-dirty", want: "0.3.0+git5.abc1234.dirty"},
		{in: "v1.0.0-rc1-12-g0123abc", want: "1.0.0~rc1+git12.0123abc"},
		{in: "d8e4576", want: "0.0.0~git.d8e4576"},
		{in: "d8e4576-dirty", want: "0.0.0~git.d8e4576.dirty"},
		{in: "0.0.0-dev", want: "0.0.0~dev"},
		{in: "", wantErr: true},
		{in: "release-7", wantErr: true},
		{in: "v1.2", wantErr: true},
		{in: "v1.2.3 ; rm -rf /", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := PackageVersion(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("PackageVersion(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
