// Package record stores session recordings encrypted at rest and exports
// them as asciicast v2 (M9, M13, M16).
//
// It knows nothing about SSH: the gateway hands it terminal output, input
// with the person who typed it, window sizes, markers, exec streams and
// sftp operations, and gets back a Summary whose hashes go into the audit
// log with session.end.
//
// # Keys
//
// A Vault holds one random 32-byte data key per tenant and UTC day, stored
// wrapped by a key-encryption key (KEK) in <vault>/keys/<tenant>/<day>.key.
// The KEK is either a file of 32 random bytes (FileKEK) or an age identity
// (AgeKEK); without it nothing under the data directory can be read.
// Shred destroys a data key (crypto-shredding): every recording of that
// tenant and day becomes unreadable, and a tombstone makes readers say so
// instead of reporting a generic failure.
//
// # File format
//
// <dir>/recordings/<tenant>/<YYYY-MM-DD>/<session>.rec, named by session id,
// never by time stamp:
//
//	header line   JSON, plaintext, no personal data:
//	              {"format","version","session","tenant","day","key","kind","aead"} "\n"
//	chunk*        uint32 big-endian body length | body
//	body          24-byte random nonce | XChaCha20-Poly1305(plaintext, ad)
//	ad            "tandem-rec-chunk-v1" | SHA-256(header line) | uint64 BE sequence
//	plaintext     flags byte (bit 0: final chunk) | events
//
// The additional data binds every chunk to its file (header hash, which
// names the session, tenant and data key) and to its place (sequence
// number), so chunks cannot be altered, reordered or moved between files
// unnoticed. Only the last chunk written by Close carries the final flag; a
// file without it was cut short (a crash or truncation) and the Reader
// returns ErrIncomplete after the last whole chunk.
//
// Events are binary, raw bytes as they came (so a UTF-8 character split
// across two PTY reads is stored intact and joined again at export):
//
//	type byte | uvarint time offset in microseconds since Meta.Started | fields
//
// The first event of every recording is the Meta event (host, login, owner,
// command …), so personal data is only ever stored encrypted. The canonical
// event stream is the concatenation of all encoded events in order, across
// chunks; Summary.SHA256 is its SHA-256, independent of how events were cut
// into chunks. Summary.FileSHA256 is the SHA-256 of the encrypted file
// itself; docs/STANDARDS.md asks audit leaves to carry the hash of the encrypted
// record, which stays meaningful after the data key is shredded.
//
// # Durability
//
// The Writer buffers events and seals a chunk when the buffer reaches
// Options.ChunkSize (64 KiB) or on every tick of Options.FlushInterval (one
// second). Every sealed chunk is written to the file at once, and each tick
// also fsyncs the file, so a crash of the process or of the machine loses
// at most about the last second. Memory per recording is bounded by the
// chunk size, never the session length.
//
// # Secret prompts and sealed keystrokes
//
// When terminal output ends with a prompt for a secret (IsSecretPrompt:
// "[sudo] Passwort für deploy: ", "Kennwort:", "alice@db1's password:",
// "Enter passphrase for key …:", "PIN:", "Verification code:", a pinentry
// dialog …) the input that follows, up to the next Enter, Ctrl-C or
// Ctrl-D, is not stored in the recording but sealed: encrypted under the
// tenant's sealed key of the day (a key of its own class, in
// <vault>/sealed-keys/, wrapped by the same KEK) into a sidecar file
// <dir>/sealed/<tenant>/<day>/<session>.sealed (see sealed.go). The
// recording gets an EvSealed event per person where the answer ended,
// exported as the marker "9 keystrokes sealed (secret prompt)", and Close
// writes the totals (EvSealedEnd, Summary.Sealed). A session with more
// than SealedFlagPrompts (3) prompts or SealedFlagBytes (256) sealed bytes
// is flagged: a fake "Password:" prompt with echo off that hides commands
// shows up in the summary, session.end and the listing.
//
// Nobody opens sealed keystrokes through Tandem yet: reading recordings
// uses only the data key and never touches the sidecar; OpenSealed is for
// the disclosure process of M15. An audit trail must not become a password
// store, nor a place where commands can hide.
package record
