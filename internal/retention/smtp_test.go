package retention

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"tandem.dev/tandem/internal/config"
	"tandem.dev/tandem/internal/testenv"
)

func TestSMTPNoticeArrivesOverSTARTTLS(t *testing.T) {
	addr, cert, mbox := testenv.StartSMTP(t)
	n := NewNotifier(config.DPO{To: "dpo@example.org", From: "gw@example.org", Timeout: config.Duration{Duration: 10 * time.Second},
		SMTP: &config.SMTP{Addr: addr, CAFile: cert, StartTLS: config.StartTLSRequired}})
	if err := n.Deliver(context.Background(), "Tandem: test notice", "Tenant: t1\nRequest: INC-1\n"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(mbox)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subject: Tandem: test notice", "To: dpo@example.org", "Request: INC-1"} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("mail lacks %q:\n%s", want, b)
		}
	}

	// A certificate the CA file does not vouch for: nothing is sent.
	other, _ := testenv.SelfSigned(t, t.TempDir())
	n = NewNotifier(config.DPO{To: "dpo@example.org", From: "gw@example.org", Timeout: config.Duration{Duration: 10 * time.Second},
		SMTP: &config.SMTP{Addr: addr, CAFile: other, StartTLS: config.StartTLSRequired}})
	if err := n.Deliver(context.Background(), "x", "y"); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("untrusted server accepted: %v", err)
	}
}

func TestSMTPRefusesServerWithoutSTARTTLS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() { // a server that offers no STARTTLS
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		c.Write([]byte("220 plain ESMTP\r\n"))
		c.Read(buf)
		c.Write([]byte("250-plain\r\n250 8BITMIME\r\n"))
		c.Read(buf)
	}()
	n := NewNotifier(config.DPO{To: "dpo@example.org", From: "gw@example.org", Timeout: config.Duration{Duration: 5 * time.Second},
		SMTP: &config.SMTP{Addr: ln.Addr().String(), StartTLS: config.StartTLSRequired}})
	if err := n.Deliver(context.Background(), "x", "secret text"); err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") {
		t.Fatalf("sent without STARTTLS: %v", err)
	}
	ln.Close()
	<-done
}
