package monitoring

import (
	"io"

	"golang.org/x/crypto/ssh"
)

// CountSignatures returns signer counting each signature it makes as one
// certificate of ca ("user" or "host"): the gateway's CA keys sign
// nothing but certificates.
func (m *Metrics) CountSignatures(ca string, signer ssh.Signer) ssh.Signer {
	return countingSigner{Signer: signer, n: m.certsSigned.WithLabelValues(ca)}
}

type countingSigner struct {
	ssh.Signer
	n interface{ Inc() }
}

func (s countingSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	sig, err := s.Signer.Sign(rand, data)
	if err == nil {
		s.n.Inc()
	}
	return sig, err
}
