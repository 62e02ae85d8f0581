package audit

import (
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendTailV2 appends t as encoding/json marshals it, byte for byte
// (FuzzTailV2JSON holds it to that), without reflection: marshalling
// every event's tail through encoding/json was a fifth of an appender's
// CPU, and the appenders' CPU is what the writer waits for between group
// commits. With leaf set it leaves out every part's ct, which gives the
// leaf form (appendLeafForm) without scanning the record again.
func appendTailV2(dst []byte, t *tailV2, leaf bool) []byte {
	dst = append(dst, `{"parts":`...)
	if t.Parts == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i := range t.Parts {
			p := &t.Parts[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"class":`...)
			dst = appendJSONString(dst, string(p.Class))
			if p.CT != "" && !leaf {
				dst = append(dst, `,"ct":`...)
				dst = appendJSONString(dst, p.CT)
			}
			dst = append(dst, `,"ct_sha256":`...)
			dst = appendJSONString(dst, p.CTSHA256)
			dst = append(dst, `,"day":`...)
			dst = appendJSONString(dst, p.Day)
			dst = append(dst, `,"key":`...)
			dst = appendJSONString(dst, p.Key)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"tenant":`...)
	dst = appendJSONString(dst, t.Tenant)
	dst = append(dst, `,"time":`...)
	dst = appendJSONString(dst, t.Time)
	dst = append(dst, `,"type":`...)
	dst = appendJSONString(dst, string(t.Type))
	if len(t.Unencrypted) > 0 {
		dst = append(dst, `,"unencrypted":`...)
		dst = appendJSONMap(dst, t.Unencrypted)
	}
	dst = append(dst, `,"v":`...)
	dst = strconv.AppendInt(dst, int64(t.V), 10)
	return append(dst, '}')
}

// appendPlain appends a part's clear text as encoding/json marshals it
// (FuzzTailV2JSON again): the other half of what encoding/json cost an
// appender.
func appendPlain(dst []byte, p *plain) []byte {
	dst = append(dst, '{')
	first := true
	field := func(name string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, '"', ':')
	}
	if len(p.Attrs) > 0 {
		field("attrs")
		dst = appendJSONMap(dst, p.Attrs)
	}
	for _, f := range [...]struct{ name, v string }{{"host", p.Host}, {"login", p.Login}, {"person", p.Person},
		{"request", p.Request}, {"session", p.Session}, {"source", p.Source}} {
		if f.v != "" {
			field(f.name)
			dst = appendJSONString(dst, f.v)
		}
	}
	return append(dst, '}')
}

// appendJSONMap appends m as encoding/json does: keys sorted.
func appendJSONMap(dst []byte, m map[string]string) []byte {
	var small [16]string // most events have a few attributes: no allocation
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes encoding/json copies as they are.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\' && b != '<' && b != '>' && b != '&'
	}
	return t
}()

// appendJSONString appends s quoted as encoding/json does with its
// default HTML escaping: <, > and & as \u003c, \u003e, \u0026, control
// characters as \b, \f, \n, \r, \t or \u00XX, invalid UTF-8 as \ufffd,
// and U+2028 and U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
