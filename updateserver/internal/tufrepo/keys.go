package tufrepo

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/dropless/dropless/pkg/atomicfile"
)

// ErrKeyOffline means a role's private key is not on this machine: the
// release team keeps it elsewhere (for targets), or it was exported.
var ErrKeyOffline = errors.New("key is not on this server")

// Signer signs metadata with one role key.
type Signer struct {
	signature.Signer
	Key *metadata.Key // the public half, as root metadata lists it
	ID  string        // the TUF key ID
}

// KeyStore keeps one ed25519 private key per role as PKCS#8 PEM files,
// mode 0600, named <role>.pem in Dir.
type KeyStore struct {
	Dir string
}

// Path is the file that holds role's private key.
func (k KeyStore) Path(role string) string {
	return filepath.Join(k.Dir, role+".pem")
}

// Has reports whether role's private key is present.
func (k KeyStore) Has(role string) bool {
	_, err := os.Stat(k.Path(role))
	return err == nil
}

// Generate creates a fresh key for every top-level role that has none yet;
// it never overwrites a key.
func (k KeyStore) Generate() error {
	if err := os.MkdirAll(k.Dir, 0o700); err != nil {
		return fmt.Errorf("create key dir: %w", err)
	}
	for _, role := range TopLevelRoles {
		if k.Has(role) {
			continue
		}
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("generate %s key: %w", role, err)
		}
		pemBytes, err := MarshalPrivateKey(priv)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(k.Path(role), pemBytes, 0o600); err != nil {
			return fmt.Errorf("write %s key: %w", role, err)
		}
	}
	return nil
}

// Signer loads role's key. It returns an error wrapping ErrKeyOffline when
// the key file is absent.
func (k KeyStore) Signer(role string) (*Signer, error) {
	s, err := LoadSignerFile(k.Path(role))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %w", role, ErrKeyOffline)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s key: %w", role, err)
	}
	return s, nil
}

// MarshalPrivateKey encodes an ed25519 key as PKCS#8 PEM, the format
// `openssl pkey` reads too.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// LoadSignerFile reads a PKCS#8 PEM ed25519 private key file.
func LoadSignerFile(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseSigner(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseSigner parses a PKCS#8 PEM ed25519 private key.
func ParseSigner(pemBytes []byte) (*Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" file")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("private key is %T; only ed25519 keys are supported", k)
	}
	return newSigner(priv)
}

func newSigner(priv ed25519.PrivateKey) (*Signer, error) {
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	key, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	id, err := key.ID()
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	return &Signer{Signer: s, Key: key, ID: id}, nil
}
