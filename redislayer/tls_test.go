package redislayer_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// startTLSRedis starts a redis-server that accepts only TLS connections
// and only the ACL user alice (password s3cret). It returns the port and a
// certificate pool trusting the server.
func startTLSRedis(t *testing.T) (int, *x509.CertPool) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server is not on PATH (apt-get install redis-server)")
	}
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redislayer test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "redis.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, strings.Join([]string{
		"port 0", "tls-port %d", "bind 127.0.0.1", "tls-cert-file %s", "tls-key-file %s",
		"tls-ca-cert-file %s", "tls-auth-clients no", `save ""`, "appendonly no", "dir %s",
		"user default off", "user alice on >s3cret ~* &* +@all", "",
	}, "\n"), port, certFile, keyFile, certFile, dir), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server with TLS did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	pool := x509.NewCertPool()
	pool.AddCert(mustParse(t, der))
	return port, pool
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rediss:// with an ACL user: messages, groups, process-specific channels
// and an interrupted blocking pop (CLIENT UNBLOCK) all work; a wrong
// password or an untrusted certificate is refused at New.
func TestTLSWithACLUser(t *testing.T) {
	t.Parallel()
	port, pool := startTLSRedis(t)
	url := fmt.Sprintf("rediss://alice:s3cret@127.0.0.1:%d/0", port)
	ctx := t.Context()
	l := newLayer(t, redislayer.Config{Hosts: []string{url}, TLSConfig: &tls.Config{RootCAs: pool}})

	if err := l.Send(ctx, "tls.work", channels.Content{"b": []byte{0, 1}}); err != nil {
		t.Fatal(err)
	}
	if c := recvOne(t, l, "tls.work"); string(c.Bytes("b")) != "\x00\x01" {
		t.Fatalf("received %v", c)
	}
	proc, _ := l.NewChannel(ctx, "tls.gw!")
	if err := l.GroupAdd(ctx, "tls-room", proc); err != nil {
		t.Fatal(err)
	}
	if err := l.GroupSend(ctx, "tls-room", channels.Content{"text": "hi"}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ch, _, err := l.ReceivePrefix(rctx, "tls.gw!"); err != nil || ch != proc {
		t.Fatalf("ReceivePrefix = %q, %v", ch, err)
	}
	// A blocking pop interrupted by its context.
	bctx, bcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer bcancel()
	start := time.Now()
	if _, _, err := l.Receive(bctx, "tls.empty"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on an empty channel = %v; want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("the interrupted Receive took %v", el)
	}

	for _, tc := range []struct {
		name string
		cfg  redislayer.Config
	}{
		{"wrong password", redislayer.Config{Hosts: []string{fmt.Sprintf("rediss://alice:wrong@127.0.0.1:%d/0", port)}, TLSConfig: &tls.Config{RootCAs: pool}}},
		{"untrusted certificate", redislayer.Config{Hosts: []string{url}}},
	} {
		bad, err := redislayer.New(ctx, tc.cfg)
		if err == nil {
			bad.Close()
			t.Errorf("New with a %s succeeded", tc.name)
			continue
		}
		if errors.Is(err, redislayer.ErrUnavailable) {
			t.Errorf("New with a %s = %v; want a configuration error, not ErrUnavailable", tc.name, err)
		}
		t.Logf("New with a %s: %v", tc.name, err)
	}
}
