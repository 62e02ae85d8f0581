package config

import "path/filepath"

// Store says where the state store lives. Nodes of a cluster share one
// store (docs/HA.md): each node keeps its own data_dir, and path names
// the one state file they all open.
type Store struct {
	// Path is the SQLite state file. Default: data_dir/state.db; a
	// relative path is taken from the configuration file's directory.
	Path string `yaml:"path"`
}

func (s *Store) fillDefaults(cfgPath, dataDir string) {
	switch {
	case s.Path == "":
		s.Path = filepath.Join(dataDir, "state.db")
	case cfgPath != "" && !filepath.IsAbs(s.Path):
		if abs, err := filepath.Abs(filepath.Join(filepath.Dir(cfgPath), s.Path)); err == nil {
			s.Path = abs
		}
	}
}
