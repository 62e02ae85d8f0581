package syslog

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/vault"
)

// RFC 5424 messages for the audit log (docs/CENTRAL-LOG.md). Each record
// is one message: its clear fields and each encrypted part's class, day,
// key id and ciphertext hash in structured data, the canonical record
// itself (ciphertexts included) as MSG. Each signed checkpoint is one
// message of its own, the note base64-encoded so that collectors that
// escape line breaks keep it intact.

// enterprise is the private enterprise number of the SD-IDs: 32473 is the
// one RFC 5612 reserves for documentation, until Tandem has its own.
const enterprise = "32473"

// SD-IDs. RFC 5424 allows each SD-ID once per message, so every part's
// element is named by its class.
const (
	sdAudit      = "audit@" + enterprise
	sdCheckpoint = "checkpoint@" + enterprise
)

// pri is facility 13 (log audit) at severity 6 (informational).
const pri = "<110>1 "

// msgidCheckpoint is the MSGID of checkpoint messages; records carry
// their event type.
const msgidCheckpoint = "checkpoint"

const appName = "tandem"

// header is what every message of one gateway shares.
type header struct {
	hostname string
}

// recordMessage is the message of one record of segment seg.
func (h header) recordMessage(seg int, env audit.Envelope, raw []byte) []byte {
	b := make([]byte, 0, len(raw)+512)
	b = h.start(b, env.Time, string(env.Type))
	b = append(b, '[')
	b = append(b, sdAudit...)
	b = param(b, "index", strconv.FormatUint(env.Index, 10))
	b = param(b, "segment", strconv.Itoa(seg))
	b = param(b, "tenant", env.Tenant)
	b = param(b, "type", string(env.Type))
	b = param(b, "class", recordClass(env))
	b = param(b, "v", strconv.Itoa(env.V))
	b = append(b, ']')
	for _, p := range env.Parts {
		b = append(b, '[')
		b = append(b, string(p.Class)+"@"+enterprise...)
		b = param(b, "day", p.Day)
		b = param(b, "key", p.Key)
		b = param(b, "ct_sha256", p.CTSHA256)
		b = append(b, ']')
	}
	b = append(b, ' ')
	return append(b, raw...)
}

// checkpointMessage is the message of one signed checkpoint of segment seg.
func (h header) checkpointMessage(seg int, cp audit.SignedCheckpoint, now time.Time) []byte {
	b := make([]byte, 0, 2*len(cp.Note)+256)
	b = h.start(b, now, msgidCheckpoint)
	b = append(b, '[')
	b = append(b, sdCheckpoint...)
	b = param(b, "origin", cp.Origin)
	b = param(b, "segment", strconv.Itoa(seg))
	b = param(b, "size", strconv.FormatUint(cp.Size, 10))
	b = append(b, "] "...)
	return base64.StdEncoding.AppendEncode(b, cp.Note)
}

// start appends PRI, VERSION, TIMESTAMP (microseconds, the most RFC 5424
// allows; the record keeps nanoseconds), HOSTNAME, APP-NAME, PROCID and
// MSGID.
func (h header) start(b []byte, t time.Time, msgid string) []byte {
	b = append(b, pri...)
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, token(h.hostname, 255)...)
	b = append(b, " "+appName+" - "...)
	b = append(b, token(msgid, 32)...)
	return append(b, ' ')
}

// recordClass is the retention class a collector keeps the message by:
// admin when the event has admin fields (an admin action), else the class
// of its one part, "clear" when it has none. Fields of a shorter class in
// the same message become unreadable when their key is destroyed anyway.
func recordClass(env audit.Envelope) string {
	if env.V < 2 {
		return "clear"
	}
	for _, c := range []vault.Class{vault.Admin, vault.Content, vault.Sealed, vault.Operational} {
		for _, p := range env.Parts {
			if p.Class == c {
				return string(c)
			}
		}
	}
	return "clear"
}

// param appends ` name="value"` with the escapes of RFC 5424 §6.3.3.
func param(b []byte, name, value string) []byte {
	b = append(b, ' ')
	b = append(b, name...)
	b = append(b, `="`...)
	for i := 0; i < len(value); i++ {
		if c := value[i]; c == '"' || c == '\\' || c == ']' {
			b = append(b, '\\')
		}
		b = append(b, value[i])
	}
	return append(b, '"')
}

// token makes s a header field: printable US-ASCII without spaces, at
// most n bytes, "-" when empty.
func token(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r > 32 && r < 127 {
			return r
		}
		return '_'
	}, s)
	if len(s) > n {
		s = s[:n]
	}
	if s == "" {
		return "-"
	}
	return s
}

// appendFrame appends msg with RFC 5425 octet-counting framing: the
// length in decimal, a space, the message.
func appendFrame(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}
