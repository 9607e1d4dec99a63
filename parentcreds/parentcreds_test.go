package parentcreds

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/mdlayher/vsock"
)

// serve starts s on a unix socket and returns a Provider dialling it.
func serve(t *testing.T, s *Server) *Provider {
	t.Helper()
	path := filepath.Join(t.TempDir(), "creds.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &Provider{Dial: func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
}

type expiring struct{ creds aws.Credentials }

func (e expiring) Retrieve(context.Context) (aws.Credentials, error) { return e.creds, nil }

type failing struct{}

func (failing) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{}, errors.New("no EC2 IMDS role found")
}

func TestServeAndRetrieve(t *testing.T) {
	exp := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		creds  aws.CredentialsProvider
		region string
		want   aws.Credentials
	}{
		{"static", credentials.NewStaticCredentialsProvider("AKIDSTATIC", "secret", ""), "eu-west-1",
			aws.Credentials{AccessKeyID: "AKIDSTATIC", SecretAccessKey: "secret", Source: Source}},
		{"session", expiring{aws.Credentials{AccessKeyID: "ASIATEMP", SecretAccessKey: "s2", SessionToken: "tok", CanExpire: true, Expires: exp.In(time.FixedZone("x", 3600))}}, "us-east-1",
			aws.Credentials{AccessKeyID: "ASIATEMP", SecretAccessKey: "s2", SessionToken: "tok", Source: Source, CanExpire: true, Expires: exp}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := serve(t, &Server{Credentials: tt.creds, Region: tt.region})
			ctx := context.Background()
			got, err := p.Retrieve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Expires.Equal(tt.want.Expires) {
				t.Errorf("Expires = %v, want %v", got.Expires, tt.want.Expires)
			}
			got.Expires, tt.want.Expires = time.Time{}, time.Time{}
			if got != tt.want {
				t.Errorf("Retrieve = %+v, want %+v", got, tt.want)
			}
			region, err := p.Region(ctx)
			if err != nil || region != tt.region {
				t.Errorf("Region = %q, %v; want %q", region, err, tt.region)
			}
			// The SDK's cache accepts the provider as is.
			cached, err := aws.NewCredentialsCache(p).Retrieve(ctx)
			if err != nil || cached.AccessKeyID != tt.want.AccessKeyID {
				t.Errorf("through aws.CredentialsCache: %+v, %v", cached, err)
			}
		})
	}
}

func TestServeReportsParentFailure(t *testing.T) {
	p := serve(t, &Server{Credentials: failing{}, Region: "us-east-1"})
	_, err := p.Retrieve(context.Background())
	if !errors.Is(err, ErrParent) || !strings.Contains(err.Error(), "no EC2 IMDS role") {
		t.Fatalf("Retrieve = %v, want ErrParent naming the cause", err)
	}
}

// fixed answers every connection with the same bytes, as a hostile or
// broken parent would.
func fixed(t *testing.T, answer []byte) *Provider {
	t.Helper()
	return &Provider{Dial: func(ctx context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		go func() {
			defer a.Close()
			a.Write(answer)
		}()
		return b, nil
	}}
}

func TestProviderRejectsBadAnswers(t *testing.T) {
	tests := []struct {
		name, answer, want string
	}{
		{"empty", "", "bad answer"},
		{"not json", "AKID secret", "bad answer"},
		{"no secret", `{"AccessKeyId":"AKID"}`, "no AccessKeyId or SecretAccessKey"},
		{"no key id", `{"SecretAccessKey":"s"}`, "no AccessKeyId or SecretAccessKey"},
		{"unknown field", `{"AccessKeyId":"A","SecretAccessKey":"s","Extra":1}`, "unknown field"},
		{"trailing object", `{"AccessKeyId":"A","SecretAccessKey":"s"}{"AccessKeyId":"B"}`, "trailing data"},
		{"bad expiration", `{"AccessKeyId":"A","SecretAccessKey":"s","Expiration":"tomorrow"}`, "bad answer"},
		{"too long", `{"AccessKeyId":"A","SecretAccessKey":"` + strings.Repeat("s", MaxResponse) + `"}`, "longer than"},
		{"error", `{"Error":"role detached"}`, "role detached"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fixed(t, []byte(tt.answer)).Retrieve(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Retrieve = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

func TestProviderHonoursContext(t *testing.T) {
	// A parent that accepts and never answers.
	p := &Provider{Dial: func(ctx context.Context) (net.Conn, error) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close() })
		return b, nil
	}}
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	if _, err := p.Retrieve(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Retrieve = %v, want context.Canceled", err)
	}
}

func TestServeNeedsProvider(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := Serve(context.Background(), l, nil, "x"); err == nil {
		t.Fatal("Serve without a provider succeeded")
	}
}

// TestProviderTimesOut: a parent that accepts and never answers fails the
// Fetch once Provider.Timeout or ctx's deadline, whichever is first,
// passes, instead of hanging the enclave's boot.
func TestProviderTimesOut(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration // Provider.Timeout
		ctxWait time.Duration // ctx's deadline; 0: none
	}{
		{"Timeout, ctx without deadline", 50 * time.Millisecond, 0},
		{"ctx deadline before the default", 0, 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("unix", filepath.Join(t.TempDir(), "silent.sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() { // accept, stay silent, keep the connection open
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { c.Close() })
				}
			}()
			p := &Provider{Timeout: tt.timeout, Dial: func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", l.Addr().String())
			}}
			ctx := context.Background()
			if tt.ctxWait > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxWait)
				defer cancel()
			}
			if _, err := p.Fetch(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Fetch from a silent parent = %v, want context.DeadlineExceeded", err)
			}
		})
	}
}

// peerConn is one end of a pipe that claims to come from remote.
type peerConn struct {
	net.Conn
	remote net.Addr
}

func (c peerConn) RemoteAddr() net.Addr { return c.remote }

// chanListener accepts the connections sent on conns.
type chanListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *chanListener) Addr() net.Addr { return &vsock.Addr{ContextID: 3, Port: 8001} }

func TestServePeerCID(t *testing.T) {
	tests := []struct {
		name    string
		peerCID uint32 // Server.PeerCID
		remote  net.Addr
		answer  bool
	}{
		{"any peer", 0, &vsock.Addr{ContextID: 17, Port: 1024}, true},
		{"any peer, not vsock", 0, &net.UnixAddr{Name: "@", Net: "unix"}, true},
		{"allowed CID", 16, &vsock.Addr{ContextID: 16, Port: 1024}, true},
		{"other CID", 16, &vsock.Addr{ContextID: 17, Port: 1024}, false},
		{"host CID", 16, &vsock.Addr{ContextID: 2, Port: 1024}, false},
		{"not vsock", 16, &net.UnixAddr{Name: "@", Net: "unix"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &chanListener{conns: make(chan net.Conn), closed: make(chan struct{})}
			s := &Server{Credentials: credentials.NewStaticCredentialsProvider("AKIDPEER", "s", ""), Region: "us-east-1", PeerCID: tt.peerCID}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx, l) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Serve: %v", err)
				}
			}()
			p := &Provider{Dial: func(ctx context.Context) (net.Conn, error) {
				a, b := net.Pipe()
				l.conns <- peerConn{a, tt.remote}
				return b, nil
			}}
			r, err := p.Fetch(context.Background())
			if tt.answer {
				if err != nil || r.AccessKeyId != "AKIDPEER" {
					t.Fatalf("Fetch = %+v, %v; want the credentials", r, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "bad answer") {
				t.Fatalf("Fetch from a refused peer = %+v, %v; want nothing (connection closed)", r, err)
			}
			if cerr := CheckPeer(tt.remote, tt.peerCID); !errors.Is(cerr, ErrPeer) {
				t.Errorf("CheckPeer(%v, %d) = %v, want ErrPeer", tt.remote, tt.peerCID, cerr)
			}
		})
	}
}
