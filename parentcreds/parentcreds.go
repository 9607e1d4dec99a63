package parentcreds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/mdlayher/vsock"
)

// MaxResponse bounds the bytes Provider reads from the parent: session
// tokens are a few KiB, so 64 KiB leaves room and stops a hostile parent
// from making the enclave allocate without bound.
const MaxResponse = 64 << 10

// Source is the aws.Credentials Source of credentials from Provider.
const Source = "parentcreds"

// ErrParent is wrapped by errors the parent reported instead of credentials.
var ErrParent = errors.New("parentcreds: parent has no credentials")

// Response is the JSON object written on each connection.
type Response struct {
	AccessKeyId     string    `json:",omitempty"`
	SecretAccessKey string    `json:",omitempty"`
	Token           string    `json:",omitempty"`
	Expiration      time.Time `json:",omitzero"` // zero: does not expire
	Region          string    `json:",omitempty"`
	Error           string    `json:",omitempty"` // set instead of the credentials
}

// Server serves credentials. Credentials is required; Region is passed on
// so the enclave needs no configuration of its own to find its KMS endpoint.
type Server struct {
	Credentials aws.CredentialsProvider
	Region      string
	// Timeout bounds getting credentials and writing one answer
	// (default 10s): a client that never reads cannot hold a goroutine.
	Timeout time.Duration
	// PeerCID, when not zero, is the only vsock context ID answered: a
	// connection from another CID, or not over vsock, is closed unanswered.
	// Set it to the enclave's CID (nitro-cli run-enclave --enclave-cid) so
	// another enclave or a local process cannot take the role's
	// credentials through this endpoint. Zero answers any peer.
	PeerCID uint32
	Logger  *slog.Logger // default: discard
}

// ErrPeer is wrapped by CheckPeer's errors.
var ErrPeer = errors.New("parentcreds: peer not allowed")

// CheckPeer reports whether the peer at remote may be answered by a server
// allowing only vsock context ID cid (0: any peer).
func CheckPeer(remote net.Addr, cid uint32) error {
	if cid == 0 {
		return nil
	}
	va, ok := remote.(*vsock.Addr)
	if !ok {
		return fmt.Errorf("%w: %s is not a vsock peer, want CID %d", ErrPeer, remote, cid)
	}
	if va.ContextID != cid {
		return fmt.Errorf("%w: CID %d, want %d", ErrPeer, va.ContextID, cid)
	}
	return nil
}

// Serve answers connections on l with the current credentials until ctx is
// done (then it closes l and returns nil) or l fails.
func Serve(ctx context.Context, l net.Listener, creds aws.CredentialsProvider, region string) error {
	s := &Server{Credentials: creds, Region: region}
	return s.Serve(ctx, l)
}

// Serve answers connections on l until ctx is done or l fails. Each
// connection gets one Response and is closed; connections are served one
// at a time, since an answer is small and the enclave asks rarely.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.Credentials == nil {
		return errors.New("parentcreds: no credentials provider")
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("parentcreds: accept: %w", err)
		}
		if err := CheckPeer(c.RemoteAddr(), s.PeerCID); err != nil {
			log.Warn("connection refused", "remote", c.RemoteAddr().String(), "err", err)
			c.Close()
			continue
		}
		s.answer(ctx, c, log)
	}
}

func (s *Server) answer(ctx context.Context, c net.Conn, log *slog.Logger) {
	defer c.Close()
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c.SetDeadline(time.Now().Add(timeout))
	r := Response{Region: s.Region}
	creds, err := s.Credentials.Retrieve(ctx)
	if err != nil {
		log.Error("credentials unavailable", "remote", c.RemoteAddr().String(), "err", err)
		r = Response{Error: err.Error()}
	} else {
		r.AccessKeyId, r.SecretAccessKey, r.Token = creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken
		if creds.CanExpire {
			r.Expiration = creds.Expires.UTC()
		}
	}
	b, _ := json.Marshal(r) // strings and a time: cannot fail
	if _, err := c.Write(append(b, '\n')); err != nil {
		log.Warn("credentials not delivered", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	log.Info("credentials served", "remote", c.RemoteAddr().String(), "access_key_id", r.AccessKeyId, "expires", r.Expiration)
}

// Provider fetches credentials from the parent. It implements
// aws.CredentialsProvider.
type Provider struct {
	// Dial connects to the parent's credentials listener, e.g. vsock CID 3.
	Dial func(ctx context.Context) (net.Conn, error)
	// Timeout bounds one Fetch, dial to answer, when ctx has no earlier
	// deadline (default DefaultFetchTimeout): a parent that accepts and
	// never answers must not hang the enclave's boot.
	Timeout time.Duration
}

// DefaultFetchTimeout is Provider.Timeout's default. The parent answers
// from its cached role credentials, so seconds are plenty.
const DefaultFetchTimeout = 10 * time.Second

// Retrieve asks the parent for credentials.
func (p *Provider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	r, err := p.Fetch(ctx)
	if err != nil {
		return aws.Credentials{}, err
	}
	return aws.Credentials{
		AccessKeyID:     r.AccessKeyId,
		SecretAccessKey: r.SecretAccessKey,
		SessionToken:    r.Token,
		Source:          Source,
		CanExpire:       !r.Expiration.IsZero(),
		Expires:         r.Expiration,
	}, nil
}

// Region asks the parent for its region.
func (p *Provider) Region(ctx context.Context) (string, error) {
	r, err := p.Fetch(ctx)
	if err != nil {
		return "", err
	}
	return r.Region, nil
}

// Fetch reads one checked Response from the parent.
func (p *Provider) Fetch(ctx context.Context) (Response, error) {
	if p.Dial == nil {
		return Response{}, errors.New("parentcreds: Provider has no Dial")
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultFetchTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.Dial(ctx)
	if err != nil {
		return Response{}, fmt.Errorf("parentcreds: dial parent: %w", err)
	}
	defer c.Close()
	d, _ := ctx.Deadline() // always set: the timeout above
	c.SetDeadline(d)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	b, err := io.ReadAll(io.LimitReader(c, MaxResponse+1))
	if err != nil {
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case errors.Is(err, os.ErrDeadlineExceeded): // the connection's deadline came first
			err = context.DeadlineExceeded
		}
		return Response{}, fmt.Errorf("parentcreds: read from parent: %w", err)
	}
	return Parse(b)
}

// Parse decodes and checks a Response: one JSON object of at most
// MaxResponse bytes, no unknown fields, either an Error or both key parts.
func Parse(b []byte) (Response, error) {
	if len(b) > MaxResponse {
		return Response{}, fmt.Errorf("parentcreds: answer longer than %d bytes", MaxResponse)
	}
	var r Response
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return Response{}, fmt.Errorf("parentcreds: bad answer: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return Response{}, errors.New("parentcreds: bad answer: trailing data after the object")
	}
	switch {
	case r.Error != "":
		return Response{}, fmt.Errorf("%w: %s", ErrParent, r.Error)
	case r.AccessKeyId == "" || r.SecretAccessKey == "":
		return Response{}, errors.New("parentcreds: bad answer: no AccessKeyId or SecretAccessKey")
	}
	return r, nil
}
