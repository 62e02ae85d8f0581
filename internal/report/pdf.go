package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Browsers tried for PDF output, in order: Debian's package first.
var Browsers = []string{"chromium", "chromium-browser", "google-chrome"}

// PDFTimeout bounds one rendering.
const PDFTimeout = 2 * time.Minute

// Chromium runs without network, sync, component updates or first-run
// work, on a fresh profile of its own (never the operator's), so that
// printing a report reaches nothing outside the file. The page's own
// Content-Security-Policy forbids every load besides.
var chromiumFlags = []string{
	"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync",
	"--disable-extensions", "--no-pdf-header-footer",
}

// FindBrowser returns the first headless browser found in PATH.
func FindBrowser() (string, error) {
	for _, b := range Browsers {
		if p, err := exec.LookPath(b); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no headless browser for --pdf: install Debian's chromium (apt-get install chromium); tried %v", Browsers)
}

// PDF prints the HTML file htmlPath to pdfPath with headless Chromium.
func PDF(ctx context.Context, htmlPath, pdfPath string) error {
	bin, err := FindBrowser()
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(htmlPath)
	if err != nil {
		return err
	}
	out, err := filepath.Abs(pdfPath)
	if err != nil {
		return err
	}
	profile, err := os.MkdirTemp("", "tandem-report-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(profile)
	ctx, cancel := context.WithTimeout(ctx, PDFTimeout)
	defer cancel()
	args := append(append([]string{}, chromiumFlags...), "--user-data-dir="+profile, "--print-to-pdf="+out,
		(&url.URL{Scheme: "file", Path: abs}).String())
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.Env = append(os.Environ(), "HOME="+profile) // nothing of the caller's home
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", filepath.Base(bin), err, tail(stderr.Bytes(), 2000))
	}
	head := make([]byte, 5)
	f, err := os.Open(out)
	if err != nil {
		return fmt.Errorf("%s wrote no PDF: %s", filepath.Base(bin), tail(stderr.Bytes(), 2000))
	}
	defer f.Close()
	if _, err := f.Read(head); err != nil || !bytes.Equal(head, []byte("%PDF-")) {
		return errors.New("the browser's output is not a PDF")
	}
	return os.Chmod(out, 0o600)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(bytes.TrimSpace(b))
}
